"""A2A errors (spec §3.3.2, §5.4, §9.5): codes, messages, and the ``google.rpc.ErrorInfo`` every A2A error carries.

The same :class:`A2AError` is raised by the request parsers and the task engine whatever the binding; each
binding renders it its own way (a JSON-RPC ``error`` object here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

JSON = dict[str, Any]
ERROR_DOMAIN: Final = "a2a-protocol.org"
ERROR_INFO_TYPE: Final = "type.googleapis.com/google.rpc.ErrorInfo"

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
TASK_NOT_FOUND: Final = -32001
TASK_NOT_CANCELABLE: Final = -32002
PUSH_NOT_SUPPORTED: Final = -32003
UNSUPPORTED_OPERATION: Final = -32004
CONTENT_TYPE_NOT_SUPPORTED: Final = -32005
INVALID_AGENT_RESPONSE: Final = -32006
EXTENDED_CARD_NOT_CONFIGURED: Final = -32007
EXTENSION_SUPPORT_REQUIRED: Final = -32008
VERSION_NOT_SUPPORTED: Final = -32009

#: code -> (ErrorInfo reason, default message). Reasons and messages match a2a-sdk 1.3.
ERRORS: Final[dict[int, tuple[str, str]]] = {
    PARSE_ERROR: ("PARSE_ERROR", "Invalid JSON payload"),
    INVALID_REQUEST: ("INVALID_REQUEST", "Invalid Request"),
    METHOD_NOT_FOUND: ("METHOD_NOT_FOUND", "Method not found"),
    INVALID_PARAMS: ("INVALID_PARAMS", "Invalid params"),
    INTERNAL_ERROR: ("INTERNAL_ERROR", "Internal error"),
    TASK_NOT_FOUND: ("TASK_NOT_FOUND", "Task not found"),
    TASK_NOT_CANCELABLE: ("TASK_NOT_CANCELABLE", "Task cannot be canceled"),
    PUSH_NOT_SUPPORTED: ("PUSH_NOTIFICATION_NOT_SUPPORTED", "Push Notification is not supported"),
    UNSUPPORTED_OPERATION: ("UNSUPPORTED_OPERATION", "This operation is not supported"),
    CONTENT_TYPE_NOT_SUPPORTED: ("CONTENT_TYPE_NOT_SUPPORTED", "Incompatible content types"),
    INVALID_AGENT_RESPONSE: ("INVALID_AGENT_RESPONSE", "Invalid agent response"),
    EXTENDED_CARD_NOT_CONFIGURED: ("EXTENDED_AGENT_CARD_NOT_CONFIGURED",
                                   "Authenticated Extended Card is not configured"),
    EXTENSION_SUPPORT_REQUIRED: ("EXTENSION_SUPPORT_REQUIRED", "Extension support required"),
    VERSION_NOT_SUPPORTED: ("VERSION_NOT_SUPPORTED", "Version not supported"),
}
_A2A_CODES: Final = frozenset(range(VERSION_NOT_SUPPORTED, TASK_NOT_FOUND + 1))

#: code -> (HTTP status, gRPC status name): the spec's mapping table (§5.4), and for the JSON-RPC codes the ones
#: AIP-193 and a2a-sdk 1.3 use, so an error reads the same on every binding.
BINDING_STATUS: Final[dict[int, tuple[int, str]]] = {
    PARSE_ERROR: (400, "INVALID_ARGUMENT"),
    INVALID_REQUEST: (400, "INVALID_ARGUMENT"),
    METHOD_NOT_FOUND: (404, "UNIMPLEMENTED"),
    INVALID_PARAMS: (400, "INVALID_ARGUMENT"),
    INTERNAL_ERROR: (500, "INTERNAL"),
    TASK_NOT_FOUND: (404, "NOT_FOUND"),
    TASK_NOT_CANCELABLE: (409, "FAILED_PRECONDITION"),
    PUSH_NOT_SUPPORTED: (400, "UNIMPLEMENTED"),
    UNSUPPORTED_OPERATION: (400, "UNIMPLEMENTED"),
    CONTENT_TYPE_NOT_SUPPORTED: (415, "INVALID_ARGUMENT"),
    INVALID_AGENT_RESPONSE: (502, "INTERNAL"),
    EXTENDED_CARD_NOT_CONFIGURED: (400, "FAILED_PRECONDITION"),
    EXTENSION_SUPPORT_REQUIRED: (400, "FAILED_PRECONDITION"),
    VERSION_NOT_SUPPORTED: (400, "UNIMPLEMENTED"),
}


MAX_ERROR_MESSAGE: Final = 1024
"""Error messages are cut to this many characters: many quote the offending input, which may be megabytes."""


def shorten(text: str, limit: int = MAX_ERROR_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


class A2AError(Exception):
    """An error with its JSON-RPC code; :meth:`to_json` gives the wire ``error`` object."""

    def __init__(self, code: int, message: str | None = None, metadata: Mapping[str, str] | None = None) -> None:
        reason, default = ERRORS.get(code, ("INTERNAL_ERROR", "Internal error"))
        self.code = code
        self.reason = reason
        self.message = shorten(message or default)
        self.metadata = dict(metadata or {})
        super().__init__(self.message)

    @property
    def http_status(self) -> int:
        return BINDING_STATUS.get(self.code, (500, "INTERNAL"))[0]

    @property
    def grpc_status(self) -> str:
        """The name of the gRPC status code (``grpc.StatusCode[name]``)."""
        return BINDING_STATUS.get(self.code, (500, "INTERNAL"))[1]

    def error_info(self) -> JSON:
        """The ``google.rpc.ErrorInfo`` detail every binding carries (JSON form)."""
        return {"@type": ERROR_INFO_TYPE, "reason": self.reason, "domain": ERROR_DOMAIN, "metadata": self.metadata}

    def to_json(self) -> JSON:
        """The JSON-RPC ``error`` object."""
        body: JSON = {"code": self.code, "message": self.message}
        if self.code in _A2A_CODES or self.code == INVALID_PARAMS:
            body["data"] = [self.error_info()]
        return body

    def to_status_json(self) -> JSON:
        """The HTTP+JSON binding's error body (AIP-193): ``{"error": {code, status, message, details}}``."""
        return {"error": {"code": self.http_status, "status": self.grpc_status, "message": self.message,
                          "details": [self.error_info()]}}


def invalid_params(message: str) -> A2AError:
    return A2AError(INVALID_PARAMS, message)


def error_from_json(error: Any) -> A2AError:
    """Read a JSON-RPC ``error`` object (from any server) back into an :class:`A2AError`."""
    if not isinstance(error, dict) or not isinstance(error.get("code"), int):
        return A2AError(INTERNAL_ERROR, f"malformed JSON-RPC error: {str(error)[:200]}")
    message = error.get("message")
    return A2AError(error["code"], message if isinstance(message, str) else None)


def error_from_reason(reason: str, message: str | None = None) -> A2AError | None:
    """The A2A error an ``ErrorInfo`` reason names (how HTTP+JSON and gRPC carry the error's kind), or None."""
    code = _BY_REASON.get(reason)
    return None if code is None else A2AError(code, message)


_BY_REASON: Final = {reason: code for code, (reason, _) in ERRORS.items()}
