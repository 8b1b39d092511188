"""Reading A2A request parameters the way a ProtoJSON parser reads them: a field may be spelled camelCase or with
its proto name (``historyLength`` or ``history_length``); unknown fields are ignored; anything malformed is an
:class:`~.errors.A2AError` (-32602) naming the field.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from .errors import JSON, invalid_params
from .model import MAX_ID_LENGTH, PART_KINDS, ROLES, TASK_STATES, parse_timestamp


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
    kinds = [k for k in PART_KINDS if k in part]
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
    if role not in ROLES:
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
    push_config: JSON | None = None
    """``configuration.taskPushNotificationConfig`` as sent (checked by :func:`.push.parse_push_config` once the
    task id is known)."""


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
    push = _get(config, "taskPushNotificationConfig", "task_push_notification_config")
    if push is not None and not isinstance(push, dict):
        raise invalid_params("configuration.taskPushNotificationConfig must be an object")
    return SendParams(message, immediate, _opt_int(config, "historyLength", "history_length"), tuple(modes),
                      metadata, push or None)


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
    return base64.urlsafe_b64encode(json.dumps([updated, task_id], separators=(",", ":")).encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[float, str]:
    try:
        value = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        updated, task_id = value
        if not isinstance(updated, int | float) or not isinstance(task_id, str):
            raise TypeError
    except (ValueError, TypeError) as exc:
        raise invalid_params("'pageToken' is not a token this server issued") from exc
    return float(updated), task_id
