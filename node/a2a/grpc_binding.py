"""The gRPC binding of A2A (spec §10) on ``grpc.aio``, with the message classes a2a-sdk generates from the official
``a2a.proto`` (``a2a.types.a2a_pb2``): nothing of the proto is vendored or hand-written here.

Each call is turned into the JSON-RPC shape (camelCase ProtoJSON, :func:`.proto_json.to_json`) and handed to the agent's
:class:`~guildnet.node.a2a.operations.AgentEndpoint`, and the result back (:mod:`.proto_json`, ``ParseDict``'s
job at a third of its cost), so the three bindings
share one task engine and one set of request checks. Errors carry the spec's status code (§5.4) and a
``google.rpc.Status`` with the ``ErrorInfo`` in ``grpc-status-details-bin``, as a2a-sdk's server sends them.

Which agent: the request's ``tenant`` names it (each agent's card lists the gRPC interface with its name as
tenant); an empty tenant is the node's first agent, the one its root card describes. Service parameters
(``a2a-version``, ``a2a-extensions``, ``authorization``) are gRPC metadata; a signed call's token is bound to
``{the gRPC URL of the card}/lf.a2a.v1.A2AService/{Method}`` and the request's deterministic protobuf bytes.

Needs the ``grpc`` extra (``pip install 'guildnet[grpc]'``: a2a-sdk's own grpc extra).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import grpc
from google.protobuf.message import Message

from guildnet.protocols import a2a
from guildnet.protocols.a2a import JSON, A2AError

from ..callers import Authenticator, Unauthenticated
from .grpc_wire import RPCS, SERVICE, Rpc, path, status_of
from .operations import EXTENSIONS_HEADER, AgentEndpoint
from .proto_json import to_json, to_message

log = logging.getLogger(__name__)

_VERSION_KEY: Final = a2a.VERSION_HEADER.lower()
_WANTED: Final = frozenset({"authorization", _VERSION_KEY, EXTENSIONS_HEADER.lower()})


@functools.lru_cache(maxsize=1024)
def _remote(peer: str) -> str | None:
    """The address in a gRPC peer string (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return None


def to_proto(result: JSON, response: type[Message]) -> Message:
    """A ProtoJSON result as the response message (fields the proto lacks are dropped, as any reader would)."""
    try:
        return to_message(result, response())
    except (ValueError, TypeError) as exc:
        raise A2AError(a2a.INTERNAL_ERROR, f"the result does not fit {response.DESCRIPTOR.name}: {exc}") from exc


class GrpcBinding:
    """The node's A2A gRPC service: ``endpoints`` by agent name, ``default`` for requests without a tenant."""

    def __init__(self, endpoints: Mapping[str, AgentEndpoint], default: str, authenticator: Authenticator,
                 url: str | None = None) -> None:
        self.endpoints = endpoints
        self.default = default
        self.authenticator = authenticator
        self.url = url
        """The ``host:port`` the cards list: a signed call's audience is ``{url}/{SERVICE}/{method}``."""
        self._server: grpc.aio.Server | None = None

    def handler(self) -> grpc.GenericRpcHandler:
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for name, rpc in RPCS.items():
            if rpc.streaming:
                handlers[name] = grpc.unary_stream_rpc_method_handler(
                    self._streaming(name, rpc), request_deserializer=rpc.request.FromString,
                    response_serializer=rpc.response.SerializeToString)
            else:
                handlers[name] = grpc.unary_unary_rpc_method_handler(
                    self._unary(name, rpc), request_deserializer=rpc.request.FromString,
                    response_serializer=rpc.response.SerializeToString)
        return grpc.method_handlers_generic_handler(SERVICE, handlers)

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port."""
        self._server = grpc.aio.server(options=[("grpc.max_receive_message_length", 4 * 1024 * 1024)])
        self._server.add_generic_rpc_handlers((self.handler(),))
        bound: int = self._server.add_insecure_port(f"{host}:{port}")
        await self._server.start()
        return bound

    async def stop(self, grace: float = 1.0) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    # ---- one call ------------------------------------------------------------------------------------------
    async def _prepare(self, method: str, request: Message, context: grpc.aio.ServicerContext
                       ) -> tuple[AgentEndpoint, JSON, str | None]:
        """The endpoint, the params and the caller, or :class:`A2AError` / a 401-like UNAUTHENTICATED abort."""
        authorization = version = extensions = None
        for key, value in context.invocation_metadata() or ():  # one pass over the few keys (gRPC's: lowercase)
            name = key.lower()
            if name in _WANTED and isinstance(value, str):
                if name == "authorization":
                    authorization = value
                elif name == _VERSION_KEY:
                    version = value
                else:
                    extensions = value
        authenticator = self.authenticator
        caller = None
        if authorization is not None or not authenticator.allows_anonymous(_remote(context.peer())):
            try:  # a signed call covers the request's bytes (deterministic serialisation), as an HTTP call its body
                caller = await authenticator.caller(
                    authorization=authorization, remote=_remote(context.peer()), method="POST",
                    path=path(method), base=self.url,
                    body=request.SerializeToString(deterministic=True) if authorization else b"")
            except Unauthenticated as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"Unauthenticated: {exc}")
        params = to_json(request)
        tenant = params.pop("tenant", None) or self.default
        endpoint = self.endpoints.get(tenant)
        if endpoint is None:
            raise A2AError(a2a.INVALID_REQUEST, f"no agent {tenant!r} on this node")
        a2a.check_version(version)
        endpoint.check_extensions(extensions)
        return endpoint, params, caller

    def _unary(self, method: str, rpc: Rpc) -> Callable[[Message, grpc.aio.ServicerContext], Any]:
        response = rpc.response

        async def call(request: Message, context: grpc.aio.ServicerContext) -> Message:
            try:
                endpoint, params, caller = await self._prepare(method, request, context)
                return to_proto(await endpoint.call(method, params, caller), response)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _failed(context, method, exc)
            raise AssertionError("unreachable: a failed call was aborted")
        return call

    def _streaming(self, method: str, rpc: Rpc) -> Callable[[Message, grpc.aio.ServicerContext], Any]:
        response = rpc.response

        async def stream(request: Message, context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
            try:
                endpoint, params, caller = await self._prepare(method, request, context)
                events = await endpoint.stream(method, params, caller)
                try:
                    async for event in events:
                        yield to_proto(event, response)
                finally:
                    await events.aclose()
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await _failed(context, method, exc)
        return stream


async def _failed(context: grpc.aio.ServicerContext, method: str, exc: Exception) -> None:
    """An A2A error (or any other failure, as INTERNAL) ends the call with its status and ErrorInfo trailer.
    (Inline ``try``/``except`` in the handlers, not a context manager: this is on the path of every call.)"""
    if not isinstance(exc, A2AError):
        log.exception("A2A gRPC %s failed", method, exc_info=exc)
        exc = A2AError(a2a.INTERNAL_ERROR)
    await _abort(context, exc)


async def _abort(context: grpc.aio.ServicerContext, exc: A2AError) -> None:
    code, trailer = status_of(exc)
    context.set_trailing_metadata(trailer)
    await context.abort(code, exc.message)
