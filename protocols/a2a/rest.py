"""The HTTP+JSON binding of A2A (spec §11): which operation a verb and path name, and its parameters.

The routes are the HTTP annotations of ``a2a.proto`` (``google.api.http``), each also under a ``/{tenant}``
prefix. A route turns into the same ``(method, params)`` pair a JSON-RPC request carries (params in camelCase,
as a ProtoJSON body would spell them), so both bindings hand the task engine the very same call. Path and query
values arrive as strings; the request parsers already accept quoted integers, and booleans and task states are
read here (``includeArtifacts=true``, ``status=working`` or ``TASK_STATE_WORKING``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, unquote

from .. import bounded_json
from .errors import INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, JSON, PARSE_ERROR, A2AError, error_from_reason

MESSAGE_SEND: Final = "message:send"
MESSAGE_STREAM: Final = "message:stream"
_ROOTS: Final = frozenset({MESSAGE_SEND, MESSAGE_STREAM, "tasks", "extendedAgentCard"})
_BOOLEANS: Final = {"true": True, "false": False, "1": True, "0": False}
_QUERY_BOOLEANS: Final = frozenset({"includeArtifacts", "include_artifacts"})


@dataclass(frozen=True, slots=True)
class RestCall:
    """One HTTP request read as an A2A operation: the JSON-RPC method name and its params."""

    method: str
    params: JSON
    tenant: str | None = None

    @property
    def streaming(self) -> bool:
        return self.method in ("SendStreamingMessage", "SubscribeToTask")


class NotRouted(Exception):
    """No operation has this path (404) or this verb on it (405)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def route(verb: str, path: str, query: Mapping[str, str], payload: bytes) -> RestCall:
    """The operation ``verb path`` names (``path`` relative to the interface URL, e.g. ``tasks/abc:cancel``).

    Raises :class:`NotRouted` for an unknown path or verb, :class:`A2AError` for a malformed body or parameter.
    """
    segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
    tenant = None
    if segments and segments[0] not in _ROOTS:
        tenant, segments = segments[0], segments[1:]
    verb = verb.upper()
    method, params = _match(verb, segments)
    if verb in ("GET", "DELETE"):
        params = {**_query_params(query), **params}
    else:
        params = {**_read_body(payload), **params}
    return RestCall(method, params, tenant)


def _match(verb: str, segments: list[str]) -> tuple[str, JSON]:
    """``(method, path params)`` for the segments after the tenant."""
    if not segments:
        raise NotRouted(404, "no A2A operation at this path")
    head, rest = segments[0], segments[1:]
    if head == MESSAGE_SEND and not rest:
        return _verb(verb, "POST", "SendMessage"), {}
    if head == MESSAGE_STREAM and not rest:
        return _verb(verb, "POST", "SendStreamingMessage"), {}
    if head == "extendedAgentCard" and not rest:
        return _verb(verb, "GET", "GetExtendedAgentCard"), {}
    if head != "tasks":
        raise NotRouted(404, "no A2A operation at this path")
    if not rest:
        return _verb(verb, "GET", "ListTasks"), {}
    task = rest[0]
    if len(rest) == 1:
        if task.endswith(":cancel"):
            return _verb(verb, "POST", "CancelTask"), {"id": task.removesuffix(":cancel")}
        if task.endswith(":subscribe"):  # the proto says GET, the spec's table and a2a-sdk's client POST
            if verb not in ("GET", "POST"):
                raise NotRouted(405, f"{verb} is not allowed here")
            return "SubscribeToTask", {"id": task.removesuffix(":subscribe")}
        return _verb(verb, "GET", "GetTask"), {"id": task}
    if rest[1] != "pushNotificationConfigs" or len(rest) > 3:
        raise NotRouted(404, "no A2A operation at this path")
    if len(rest) == 2:
        if verb == "POST":
            return "CreateTaskPushNotificationConfig", {"taskId": task}
        return _verb(verb, "GET", "ListTaskPushNotificationConfigs"), {"taskId": task}
    config = {"taskId": task, "id": rest[2]}
    if verb == "DELETE":
        return "DeleteTaskPushNotificationConfig", config
    return _verb(verb, "GET", "GetTaskPushNotificationConfig"), config


def _verb(verb: str, expected: str, method: str) -> str:
    if verb != expected:
        raise NotRouted(405, f"{verb} is not allowed here; use {expected}")
    return method


def _read_body(payload: bytes) -> JSON:
    if not payload.strip():
        return {}
    try:
        doc = bounded_json.loads(payload)
    except bounded_json.TooDeep as exc:
        raise A2AError(INVALID_REQUEST, f"Request: {exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise A2AError(PARSE_ERROR, f"Invalid JSON payload: {exc}") from exc
    if not isinstance(doc, dict):
        raise A2AError(INVALID_PARAMS, "the request body must be a JSON object")
    return doc


def _query_params(query: Mapping[str, str]) -> JSON:
    params: dict[str, Any] = {}
    for key, value in query.items():
        if key in _QUERY_BOOLEANS:
            if value.lower() not in _BOOLEANS:
                raise A2AError(INVALID_PARAMS, f"'{key}' must be true or false")
            params[key] = _BOOLEANS[value.lower()]
        elif key == "status" and value and not value.startswith("TASK_STATE_"):
            params[key] = "TASK_STATE_" + value.upper().replace("-", "_")
        else:
            params[key] = value
    return params


@dataclass(frozen=True, slots=True)
class RestRequest:
    """What a client sends for an operation: verb, path (relative to the interface URL), query, JSON body."""

    verb: str
    path: str
    query: dict[str, str]
    body: JSON | None


def request_for(method: str, params: JSON) -> RestRequest:
    """The HTTP+JSON request for ``method`` with JSON-RPC-shaped ``params``: :func:`route` read backwards."""
    task = quote(str(params.get("id", "")), safe="")
    if method in ("SendMessage", "SendStreamingMessage"):
        return RestRequest("POST", MESSAGE_SEND if method == "SendMessage" else MESSAGE_STREAM, {}, params)
    if method == "GetTask":
        return RestRequest("GET", f"tasks/{task}", _query(params, exclude=("id",)), None)
    if method == "ListTasks":
        return RestRequest("GET", "tasks", _query(params), None)
    if method in ("CancelTask", "SubscribeToTask"):
        action = "cancel" if method == "CancelTask" else "subscribe"
        return RestRequest("POST", f"tasks/{task}:{action}", {}, {k: v for k, v in params.items() if k != "id"})
    raise A2AError(INVALID_REQUEST, f"{method} has no HTTP+JSON request in this client")


def _query(params: JSON, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    return {k: ("true" if v is True else "false" if v is False else str(v))
            for k, v in params.items() if k not in exclude and v is not None}


def error_from_status_json(status: int, doc: Any) -> A2AError:
    """An AIP-193 error body (any server's) back into an :class:`A2AError`, by its ErrorInfo reason."""
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return A2AError(INTERNAL_ERROR, f"HTTP {status} without an error body")
    message = error.get("message") if isinstance(error.get("message"), str) else None
    for detail in error.get("details") or ():
        reason = detail.get("reason") if isinstance(detail, dict) else None
        found = error_from_reason(reason, message) if isinstance(reason, str) else None
        if found is not None:
            return found
    return A2AError(INTERNAL_ERROR, message or f"HTTP {status}")


def stream_event(event: JSON) -> bytes:
    """One server-sent event of the HTTP+JSON binding: the StreamResponse itself (no JSON-RPC envelope)."""
    return b"".join((b"data: ", body(event), b"\n\n"))


def stream_error(error: A2AError) -> bytes:
    """An error after the stream opened: an ``error`` event holding the AIP-193 error body."""
    return b"".join((b"event: error\ndata: ", body(error.to_status_json()), b"\n\n"))


def body(value: Any) -> bytes:
    """A response body: compact JSON, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
