"""The gRPC shape of A2A that both ends share: the service's methods with their message classes (a2a-sdk's,
generated from the official ``a2a.proto``), and A2A errors as a gRPC status with a ``google.rpc.ErrorInfo`` in
the ``grpc-status-details-bin`` trailer (spec §5.4, as a2a-sdk sends them).

The server (:mod:`.grpc_binding`) writes errors with :func:`status_of`; the client (:mod:`.grpc_client`) reads them
back with :func:`error_of`, so a TaskNotFound raised on a peer is a TaskNotFound at the caller, whatever the
binding. Needs the ``grpc`` extra.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from a2a.types import a2a_pb2
from google.protobuf import any_pb2, empty_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

from guildnet.protocols import a2a
from guildnet.protocols.a2a import A2AError

SERVICE: Final = a2a_pb2.DESCRIPTOR.services_by_name["A2AService"].full_name
STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class Rpc:
    request: type[Message]
    response: type[Message]
    streaming: bool = False


RPCS: Final[dict[str, Rpc]] = {
    "SendMessage": Rpc(a2a_pb2.SendMessageRequest, a2a_pb2.SendMessageResponse),
    "SendStreamingMessage": Rpc(a2a_pb2.SendMessageRequest, a2a_pb2.StreamResponse, streaming=True),
    "GetTask": Rpc(a2a_pb2.GetTaskRequest, a2a_pb2.Task),
    "ListTasks": Rpc(a2a_pb2.ListTasksRequest, a2a_pb2.ListTasksResponse),
    "CancelTask": Rpc(a2a_pb2.CancelTaskRequest, a2a_pb2.Task),
    "SubscribeToTask": Rpc(a2a_pb2.SubscribeToTaskRequest, a2a_pb2.StreamResponse, streaming=True),
    "CreateTaskPushNotificationConfig": Rpc(a2a_pb2.TaskPushNotificationConfig, a2a_pb2.TaskPushNotificationConfig),
    "GetTaskPushNotificationConfig": Rpc(a2a_pb2.GetTaskPushNotificationConfigRequest,
                                         a2a_pb2.TaskPushNotificationConfig),
    "ListTaskPushNotificationConfigs": Rpc(a2a_pb2.ListTaskPushNotificationConfigsRequest,
                                           a2a_pb2.ListTaskPushNotificationConfigsResponse),
    "DeleteTaskPushNotificationConfig": Rpc(a2a_pb2.DeleteTaskPushNotificationConfigRequest, empty_pb2.Empty),
    "GetExtendedAgentCard": Rpc(a2a_pb2.GetExtendedAgentCardRequest, a2a_pb2.AgentCard),
}


def path(method: str) -> str:
    """The HTTP/2 path of a method: ``/lf.a2a.v1.A2AService/SendMessage``."""
    return f"/{SERVICE}/{method}"


def status_of(exc: A2AError) -> tuple[grpc.StatusCode, tuple[tuple[str, bytes], ...]]:
    """The status code and the rich-status trailer (google.rpc.Status holding the ErrorInfo)."""
    code = grpc.StatusCode[exc.grpc_status]
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=a2a.ERROR_DOMAIN, metadata=exc.metadata))
    status = status_pb2.Status(code=code.value[0], message=exc.message, details=[info])
    return code, ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def error_of(trailers: Iterable[tuple[str, Any]] | None, message: str | None) -> A2AError | None:
    """The A2A error a failed call's trailers name by their ErrorInfo reason, or None (not an A2A error)."""
    for key, value in trailers or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return None
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                found = a2a.error_from_reason(info.reason, message or status.message or None)
                if found is not None:
                    return found
    return None
