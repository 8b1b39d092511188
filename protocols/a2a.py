"""A2A 1.0 on the wire, as plain JSON values: JSON-RPC envelopes, errors, tasks, messages, agent cards.

Pure: no sockets, no database. The shapes follow ``a2a.proto`` (package ``lf.a2a.v1``) in ProtoJSON form as
``a2a-sdk`` 1.3 reads and writes it (camelCase fields, ``TASK_STATE_*``/``ROLE_*`` enums, parts as a flat
``text|raw|url|data`` oneof, stream events wrapped as ``{"statusUpdate": ...}``).

Why dicts and not the SDK's generated protobuf classes: the wire *is* JSON. Measured on this machine, reading
a SendMessage request costs 16 µs here against 143 µs through ``ParseDict``+``MessageToDict``, and writing a
finished task 15 µs against 363 µs. Fidelity is checked the other way round: the tests parse what we build
with the SDK's proto classes (strict: no unknown fields) and the interop tests drive us with the official
client.

Inputs are read the way a ProtoJSON parser reads them: a field may be spelled camelCase or with its proto
name (``historyLength`` or ``history_length``); unknown fields are ignored.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from . import bounded_json
from .canonical import canonical_json
from .jws import MalformedJWS, b64url_decode
from .jws import sign as jws_sign
from .jws import verify as jws_verify
from .keys import SigningKey

PROTOCOL_VERSION: Final = "1.0"
LEGACY_VERSION: Final = "0.3"
VERSION_HEADER: Final = "A2A-Version"
BINDING_JSONRPC: Final = "JSONRPC"
ERROR_DOMAIN: Final = "a2a-protocol.org"
ERROR_INFO_TYPE: Final = "type.googleapis.com/google.rpc.ErrorInfo"
JSON = dict[str, Any]

# --------------------------------------------------------------------------------------------------------------
# Errors (spec §5.4 / §9.5): every A2A error carries a google.rpc.ErrorInfo in the JSON-RPC ``data`` array.
# --------------------------------------------------------------------------------------------------------------

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


MAX_ERROR_MESSAGE: Final = 1024
"""Error messages are cut to this many characters: many quote the offending input, which may be megabytes."""
MAX_ID_LENGTH: Final = 1024
"""Longest ``messageId``/``taskId``/``contextId``/task ``id`` accepted: they are keys, not payload."""


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

    def to_json(self) -> JSON:
        body: JSON = {"code": self.code, "message": self.message}
        if self.code in _A2A_CODES or self.code == INVALID_PARAMS:
            body["data"] = [{"@type": ERROR_INFO_TYPE, "reason": self.reason, "domain": ERROR_DOMAIN,
                             "metadata": self.metadata}]
        return body


def invalid_params(message: str) -> A2AError:
    return A2AError(INVALID_PARAMS, message)


def error_from_json(error: Any) -> A2AError:
    """Read a JSON-RPC ``error`` object (from any server) back into an :class:`A2AError`."""
    if not isinstance(error, dict) or not isinstance(error.get("code"), int):
        return A2AError(INTERNAL_ERROR, f"malformed JSON-RPC error: {str(error)[:200]}")
    message = error.get("message")
    return A2AError(error["code"], message if isinstance(message, str) else None)


# --------------------------------------------------------------------------------------------------------------
# JSON-RPC 2.0 envelope
# --------------------------------------------------------------------------------------------------------------

#: A2A 1.0 JSON-RPC methods (= gRPC method names).
METHODS_V1: Final = frozenset({
    "SendMessage", "SendStreamingMessage", "GetTask", "ListTasks", "CancelTask", "SubscribeToTask",
    "CreateTaskPushNotificationConfig", "GetTaskPushNotificationConfig", "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig", "GetExtendedAgentCard",
})
#: A2A 0.3 JSON-RPC method -> its 1.0 name.
METHODS_V03: Final[dict[str, str]] = {
    "message/send": "SendMessage",
    "message/stream": "SendStreamingMessage",
    "tasks/get": "GetTask",
    "tasks/cancel": "CancelTask",
    "tasks/resubscribe": "SubscribeToTask",
    "tasks/pushNotificationConfig/set": "CreateTaskPushNotificationConfig",
    "tasks/pushNotificationConfig/get": "GetTaskPushNotificationConfig",
    "tasks/pushNotificationConfig/list": "ListTaskPushNotificationConfigs",
    "tasks/pushNotificationConfig/delete": "DeleteTaskPushNotificationConfig",
    "agent/getAuthenticatedExtendedCard": "GetExtendedAgentCard",
}
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


def check_version(value: str | None) -> str:
    """Return the negotiated ``Major.Minor``; a missing or empty value means 0.3 (spec §3.6).

    Only 1.0 is served: anything else raises VersionNotSupportedError (-32009), as a2a-sdk 1.3 does
    for a 0.3 call on a 1.0-only endpoint.
    """
    text = (value or "").strip()
    if not text:
        text = LEGACY_VERSION
    major_minor = ".".join(text.split(".")[:2])
    if major_minor != PROTOCOL_VERSION:
        raise A2AError(VERSION_NOT_SUPPORTED,
                       f"A2A version '{major_minor}' is not supported by this endpoint. "
                       f"Expected version '{PROTOCOL_VERSION}'.")
    return major_minor


# --------------------------------------------------------------------------------------------------------------
# Core objects
# --------------------------------------------------------------------------------------------------------------

SUBMITTED: Final = "TASK_STATE_SUBMITTED"
WORKING: Final = "TASK_STATE_WORKING"
COMPLETED: Final = "TASK_STATE_COMPLETED"
FAILED: Final = "TASK_STATE_FAILED"
CANCELED: Final = "TASK_STATE_CANCELED"
INPUT_REQUIRED: Final = "TASK_STATE_INPUT_REQUIRED"
REJECTED: Final = "TASK_STATE_REJECTED"
AUTH_REQUIRED: Final = "TASK_STATE_AUTH_REQUIRED"
TASK_STATES: Final = frozenset({SUBMITTED, WORKING, COMPLETED, FAILED, CANCELED, INPUT_REQUIRED, REJECTED,
                                AUTH_REQUIRED})
TERMINAL_STATES: Final = frozenset({COMPLETED, FAILED, CANCELED, REJECTED})
INTERRUPTED_STATES: Final = frozenset({INPUT_REQUIRED, AUTH_REQUIRED})
ROLE_USER: Final = "ROLE_USER"
ROLE_AGENT: Final = "ROLE_AGENT"
_ROLES: Final = frozenset({ROLE_USER, ROLE_AGENT})
_PART_KINDS: Final = ("text", "raw", "url", "data")


def now_iso() -> str:
    """ProtoJSON timestamp: RFC 3339, UTC, ``Z``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError) as exc:
        raise invalid_params(f"not an RFC 3339 timestamp: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def text_part(text: str) -> JSON:
    return {"text": text}


def data_part(data: Any) -> JSON:
    return {"data": data}


def new_message(role: str, parts: Sequence[JSON], *, context_id: str | None = None, task_id: str | None = None,
                message_id: str | None = None, metadata: Mapping[str, Any] | None = None) -> JSON:
    msg: JSON = {"messageId": message_id or new_id(), "role": role, "parts": list(parts)}
    if context_id:
        msg["contextId"] = context_id
    if task_id:
        msg["taskId"] = task_id
    if metadata:
        msg["metadata"] = dict(metadata)
    return msg


def new_status(state: str, message: JSON | None = None) -> JSON:
    status: JSON = {"state": state, "timestamp": now_iso()}
    if message is not None:
        status["message"] = message
    return status


def new_task(task_id: str, context_id: str, history: Sequence[JSON], state: str = SUBMITTED) -> JSON:
    return {"id": task_id, "contextId": context_id, "status": new_status(state), "history": list(history)}


def new_artifact(parts: Sequence[JSON], *, name: str | None = None, artifact_id: str | None = None) -> JSON:
    artifact: JSON = {"artifactId": artifact_id or new_id(), "parts": list(parts)}
    if name:
        artifact["name"] = name
    return artifact


def status_update(task_id: str, context_id: str, status: JSON) -> JSON:
    """A StreamResponse carrying a TaskStatusUpdateEvent (1.0 has no ``final`` flag)."""
    return {"statusUpdate": {"taskId": task_id, "contextId": context_id, "status": status}}


def artifact_update(task_id: str, context_id: str, artifact: JSON, *, append: bool = False,
                    last_chunk: bool = False) -> JSON:
    event: JSON = {"taskId": task_id, "contextId": context_id, "artifact": artifact}
    if append:
        event["append"] = True
    if last_chunk:
        event["lastChunk"] = True
    return {"artifactUpdate": event}


def with_history_length(task: JSON, history_length: int | None, *, include_artifacts: bool = True) -> JSON:
    """A shallow copy of ``task`` limited to the last ``history_length`` messages (None: all; 0: none)."""
    out = dict(task)
    if history_length is not None:
        history = task.get("history") or []
        kept = history[-history_length:] if history_length > 0 else []
        if kept:
            out["history"] = kept
        else:
            out.pop("history", None)
    if not include_artifacts:
        out.pop("artifacts", None)
    return out


def _get(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _opt_str(obj: Mapping[str, Any], camel: str, snake: str, *, max_length: int | None = None) -> str | None:
    value = _get(obj, camel, snake)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid_params(f"'{camel}' must be a string")
    if max_length is not None and len(value) > max_length:
        raise invalid_params(f"'{camel}' is longer than {max_length} characters")
    return value


def _opt_int(obj: Mapping[str, Any], camel: str, snake: str, *, minimum: int = 0) -> int | None:
    value = _get(obj, camel, snake)
    if value is None:
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():  # ProtoJSON allows quoted int32/int64
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_params(f"'{camel}' must be an integer")
    if value < minimum:
        raise invalid_params(f"'{camel}' must be >= {minimum}")
    return value


def _opt_bool(obj: Mapping[str, Any], camel: str, snake: str) -> bool:
    value = _get(obj, camel, snake)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid_params(f"'{camel}' must be a boolean")
    return value


def _check_part(part: Any, where: str) -> JSON:
    if not isinstance(part, dict):
        raise invalid_params(f"{where} must be an object")
    kinds = [k for k in _PART_KINDS if k in part]
    if len(kinds) != 1:
        raise invalid_params(f"{where} must have exactly one of text, raw, url, data")
    kind = kinds[0]
    value = part[kind]
    if kind in ("text", "url") and not isinstance(value, str):
        raise invalid_params(f"{where}.{kind} must be a string")
    if kind == "raw":
        if not isinstance(value, str):
            raise invalid_params(f"{where}.raw must be base64 text")
        try:
            base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
        except ValueError as exc:
            raise invalid_params(f"{where}.raw is not base64") from exc
    for name in ("mediaType", "filename"):
        if name in part and not isinstance(part[name], str):
            raise invalid_params(f"{where}.{name} must be a string")
    if "metadata" in part and not isinstance(part["metadata"], dict | None):
        raise invalid_params(f"{where}.metadata must be an object")
    return part


def parse_message(obj: Any) -> JSON:
    """Check a Message from a request and return it in camelCase form (proto names are accepted too)."""
    if not isinstance(obj, dict):
        raise invalid_params("'message' is required and must be an object")
    message_id = _opt_str(obj, "messageId", "message_id", max_length=MAX_ID_LENGTH)
    if message_id is None:
        raise invalid_params("message.messageId is required")
    role = obj.get("role")
    if role not in _ROLES:
        raise invalid_params("message.role must be ROLE_USER or ROLE_AGENT")
    parts = obj.get("parts")
    if not isinstance(parts, list) or not parts:
        raise invalid_params("message.parts must be a non-empty array")
    out: JSON = {"messageId": message_id, "role": role,
                 "parts": [_check_part(p, f"message.parts[{i}]") for i, p in enumerate(parts)]}
    for camel, snake in (("contextId", "context_id"), ("taskId", "task_id")):
        value = _opt_str(obj, camel, snake, max_length=MAX_ID_LENGTH)
        if value is not None:
            out[camel] = value
    metadata = obj.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise invalid_params("message.metadata must be an object")
        out["metadata"] = metadata
    refs = _get(obj, "referenceTaskIds", "reference_task_ids")
    if refs:
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise invalid_params("message.referenceTaskIds must be an array of strings")
        out["referenceTaskIds"] = refs
    extensions = obj.get("extensions")
    if extensions:
        if not isinstance(extensions, list) or not all(isinstance(e, str) for e in extensions):
            raise invalid_params("message.extensions must be an array of strings")
        out["extensions"] = extensions
    return out


@dataclass(frozen=True, slots=True)
class SendParams:
    message: JSON
    return_immediately: bool = False
    history_length: int | None = None
    accepted_output_modes: tuple[str, ...] = ()
    metadata: JSON = field(default_factory=dict)


def parse_send_params(params: Mapping[str, Any]) -> SendParams:
    message = parse_message(params.get("message"))
    config = _get(params, "configuration", "configuration") or {}
    if not isinstance(config, dict):
        raise invalid_params("'configuration' must be an object")
    modes = _get(config, "acceptedOutputModes", "accepted_output_modes") or []
    if not isinstance(modes, list) or not all(isinstance(m, str) for m in modes):
        raise invalid_params("configuration.acceptedOutputModes must be an array of strings")
    # 0.3 spelled the same thing as blocking=false; honour it so old clients are not blocked forever.
    immediate = _opt_bool(config, "returnImmediately", "return_immediately") or config.get("blocking") is False
    metadata = params.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise invalid_params("'metadata' must be an object")
    return SendParams(message, immediate, _opt_int(config, "historyLength", "history_length"), tuple(modes),
                      metadata)


@dataclass(frozen=True, slots=True)
class TaskQuery:
    id: str
    history_length: int | None = None


def parse_task_query(params: Mapping[str, Any]) -> TaskQuery:
    """Params of GetTask / CancelTask / SubscribeToTask: ``{id, historyLength?}``."""
    task_id = _opt_str(params, "id", "id", max_length=MAX_ID_LENGTH)
    if task_id is None:
        raise invalid_params("'id' is required")
    return TaskQuery(task_id, _opt_int(params, "historyLength", "history_length"))


MAX_PAGE_SIZE: Final = 100
DEFAULT_PAGE_SIZE: Final = 50


@dataclass(frozen=True, slots=True)
class ListQuery:
    context_id: str | None = None
    status: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    page_token: str | None = None
    history_length: int | None = None
    status_after: datetime | None = None
    include_artifacts: bool = False


def parse_list_query(params: Mapping[str, Any]) -> ListQuery:
    status = _opt_str(params, "status", "status")
    if status is not None and status not in TASK_STATES:
        raise invalid_params(f"'status' must be one of {sorted(TASK_STATES)}")
    page_size = _opt_int(params, "pageSize", "page_size", minimum=1)
    if page_size is not None and page_size > MAX_PAGE_SIZE:
        raise invalid_params(f"'pageSize' must be between 1 and {MAX_PAGE_SIZE}")
    after = _opt_str(params, "statusTimestampAfter", "status_timestamp_after")
    return ListQuery(
        context_id=_opt_str(params, "contextId", "context_id", max_length=MAX_ID_LENGTH),
        status=status,
        page_size=page_size or DEFAULT_PAGE_SIZE,
        page_token=_opt_str(params, "pageToken", "page_token"),
        history_length=_opt_int(params, "historyLength", "history_length"),
        status_after=parse_timestamp(after) if after else None,
        include_artifacts=_opt_bool(params, "includeArtifacts", "include_artifacts"),
    )


def encode_page_token(updated: float, task_id: str) -> str:
    """Opaque keyset cursor: the sort key of the last task of a page."""
    return base64.urlsafe_b64encode(_dumps([updated, task_id])).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[float, str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        updated, task_id = value
        if not isinstance(updated, int | float) or not isinstance(task_id, str):
            raise TypeError
    except (ValueError, TypeError) as exc:
        raise invalid_params("'pageToken' is not a token this server issued") from exc
    return float(updated), task_id


# --------------------------------------------------------------------------------------------------------------
# Agent skill calls <-> A2A messages
# --------------------------------------------------------------------------------------------------------------


def message_text(message: Mapping[str, Any]) -> str:
    return "\n".join(p["text"] for p in message.get("parts", ()) if isinstance(p.get("text"), str))


def message_input(message: Mapping[str, Any]) -> JSON:
    """A skill's arguments: the first ``data`` part holding a JSON object, else ``{"text": <joined text>}``."""
    for part in message.get("parts", ()):
        data = part.get("data")
        if isinstance(data, dict):
            return data
    return {"text": message_text(message)}


def select_skill(message: Mapping[str, Any], skill_ids: Sequence[str]) -> str:
    """``message.metadata.skill`` names the skill; an agent with one skill needs no name."""
    metadata = message.get("metadata") or {}
    wanted = metadata.get("skill") if isinstance(metadata, dict) else None
    if wanted is not None:
        if wanted not in skill_ids:
            raise invalid_params(f"unknown skill {wanted!r}; this agent offers {list(skill_ids)}")
        return str(wanted)
    if len(skill_ids) == 1:
        return skill_ids[0]
    raise invalid_params(f"this agent has several skills {list(skill_ids)}: name one in message.metadata.skill")


def skill_request(arguments: Mapping[str, Any], skill_id: str | None = None, *, context_id: str | None = None,
                  task_id: str | None = None) -> JSON:
    """The user Message that calls a skill with a JSON object (the client side of :func:`message_input`)."""
    return new_message(ROLE_USER, [data_part(dict(arguments))], context_id=context_id, task_id=task_id,
                       metadata={"skill": skill_id} if skill_id else None)


def output_artifact(output: Mapping[str, Any], skill_id: str) -> JSON:
    """A skill's result: one artifact with the JSON object as ``data`` plus the same as ``text``."""
    text = json.dumps(output, separators=(",", ":"), ensure_ascii=False)
    return new_artifact([data_part(dict(output)), {"text": text, "mediaType": "application/json"}],
                        name=f"{skill_id}-result")


def artifact_output(task: Mapping[str, Any]) -> JSON | None:
    """The first JSON-object ``data`` part among a task's artifacts (what :func:`output_artifact` wrote)."""
    for artifact in task.get("artifacts") or ():
        for part in artifact.get("parts", ()):
            if isinstance(part.get("data"), dict):
                return dict(part["data"])
    return None


# --------------------------------------------------------------------------------------------------------------
# Agent card (spec §4.4, §8) and its signature (§8.4)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardSkill:
    id: str
    name: str
    description: str
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()


def build_agent_card(*, name: str, description: str, version: str, url: str, skills: Iterable[CardSkill],
                     provider: tuple[str, str] | None = None, documentation_url: str | None = None) -> JSON:
    """A 1.0 card: one JSON-RPC interface at ``url``, streaming on, JSON and text in and out.

    Only proto fields with non-default values are written, so the card survives the SDK's
    ``ParseDict``/``MessageToDict`` round trip byte for byte and its signature verifies there too.
    """
    card: JSON = {
        "name": name,
        "description": description or name,
        "supportedInterfaces": [{"url": url, "protocolBinding": BINDING_JSONRPC,
                                 "protocolVersion": PROTOCOL_VERSION}],
        "version": version,
        "capabilities": {"streaming": True},
        "defaultInputModes": ["application/json", "text/plain"],
        "defaultOutputModes": ["application/json", "text/plain"],
        "skills": [_card_skill(s) for s in skills],
    }
    if provider is not None:
        card["provider"] = {"organization": provider[0], "url": provider[1]}
    if documentation_url:
        card["documentationUrl"] = documentation_url
    return card


def _card_skill(skill: CardSkill) -> JSON:
    out: JSON = {"id": skill.id, "name": skill.name, "description": skill.description or skill.name,
                 "tags": list(skill.tags) or [skill.id]}
    if skill.examples:
        out["examples"] = list(skill.examples)
    return out


def _clean_empty(value: Any) -> Any:
    """Drop empty strings, lists and objects (recursively), as the spec's default-value rule and a2a-sdk do."""
    if isinstance(value, dict):
        cleaned = {k: c for k, v in value.items() if (c := _clean_empty(v)) is not None}
        return cleaned or None
    if isinstance(value, list):
        items = [c for v in value if (c := _clean_empty(v)) is not None]
        return items or None
    if value is None or value == "":
        return None
    return value


def card_signing_payload(card: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical bytes of the card without ``signatures`` and without empty values."""
    body = {k: v for k, v in card.items() if k != "signatures"}
    return canonical_json(_clean_empty(body) or {})


def sign_agent_card(card: Mapping[str, Any], key: SigningKey) -> JSON:
    """Return the card with one more ``signatures`` entry: detached JWS, EdDSA, ``typ: JOSE``, ``kid`` did:key."""
    token = jws_sign(card_signing_payload(card), key, typ="JOSE", detached=True)
    protected, _, signature = token.split(".")
    signed = dict(card)
    signed["signatures"] = [*card.get("signatures", ()), {"protected": protected, "signature": signature}]
    return signed


class CardSignatureError(ValueError):
    """No signature on the card verifies (for the expected signer, when one is named)."""


def verify_agent_card(card: Mapping[str, Any], expected_did: str | None = None) -> str:
    """Return the did:key of the first valid EdDSA signature (by ``expected_did`` when given)."""
    signatures = card.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise CardSignatureError("the agent card is not signed")
    payload = card_signing_payload(card)
    for entry in signatures:
        if not isinstance(entry, dict):
            continue
        protected, signature = entry.get("protected"), entry.get("signature")
        if not isinstance(protected, str) or not isinstance(signature, str):
            continue
        try:
            header = json.loads(b64url_decode(protected))
            if expected_did is not None and header.get("kid") != expected_did:
                continue
            verified = jws_verify(f"{protected}..{signature}", detached_payload=payload)
        except (MalformedJWS, ValueError, AttributeError):
            continue
        return verified.signer
    wanted = f" by {expected_did}" if expected_did else ""
    raise CardSignatureError(f"no valid signature{wanted} on the agent card")
