"""The JSON-RPC 2.0 binding of A2A: request envelopes in, response envelopes out, as bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from .. import bounded_json
from .errors import INVALID_PARAMS, INVALID_REQUEST, JSON, PARSE_ERROR, A2AError

#: A2A 1.0 JSON-RPC methods (= gRPC method names).
METHODS_V1: Final = frozenset({
    "SendMessage", "SendStreamingMessage", "GetTask", "ListTasks", "CancelTask", "SubscribeToTask",
    "CreateTaskPushNotificationConfig", "GetTaskPushNotificationConfig", "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig", "GetExtendedAgentCard",
})
STREAMING_METHODS: Final = frozenset({"SendStreamingMessage", "SubscribeToTask"})
RequestId = str | int | None
@dataclass(frozen=True, slots=True)
class RpcRequest:
    id: RequestId
    method: str
    params: JSON


def parse_request(body: bytes | str) -> RpcRequest:
    """Parse one JSON-RPC 2.0 request. Raises -32700 for bad JSON and -32600 for a bad envelope.

    Batches are refused (-32600): A2A defines none. The error's request id is recoverable with
    :func:`request_id_of` so the reply can still name the caller's id.
    """
    try:
        doc = bounded_json.loads(body)
    except bounded_json.TooDeep as exc:  # json itself, copy.deepcopy and schema validation all recurse
        raise A2AError(INVALID_REQUEST, f"Request: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise A2AError(PARSE_ERROR, f"Invalid JSON payload: {exc}") from exc
    if not isinstance(doc, dict):
        raise A2AError(INVALID_REQUEST, "Request must be a JSON object (batches are not supported)")
    rid = doc.get("id")
    if doc.get("jsonrpc") != "2.0":
        raise A2AError(INVALID_REQUEST, "'jsonrpc' must be \"2.0\"")
    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, str | int)):
        raise A2AError(INVALID_REQUEST, "'id' must be a string, an integer or null")
    method = doc.get("method")
    if not isinstance(method, str) or not method:
        raise A2AError(INVALID_REQUEST, "'method' must be a non-empty string")
    params = doc.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise A2AError(INVALID_PARAMS, "'params' must be a JSON object")
    return RpcRequest(rid, method, params)


def request_id_of(body: bytes | str) -> RequestId:
    """Best-effort id of a request that failed validation (null when it cannot be read)."""
    try:
        doc = bounded_json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    rid = doc.get("id") if isinstance(doc, dict) else None
    return rid if isinstance(rid, str | int) and not isinstance(rid, bool) else None


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def result_response(rid: RequestId, result: Any) -> bytes:
    return _dumps({"jsonrpc": "2.0", "id": rid, "result": result})


def error_response(rid: RequestId, error: A2AError) -> bytes:
    return _dumps({"jsonrpc": "2.0", "id": rid, "error": error.to_json()})


def request_body(rid: RequestId, method: str, params: JSON) -> bytes:
    return _dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
