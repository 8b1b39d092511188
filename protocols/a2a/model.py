"""A2A core objects as plain JSON values (tasks, messages, parts, artifacts, stream events), and their constructors.
"""

from __future__ import annotations

import copy
import marshal
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

from .errors import JSON, invalid_params

MAX_ID_LENGTH: Final = 1024
"""Longest ``messageId``/``taskId``/``contextId``/task ``id`` accepted: they are keys, not payload."""
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
ROLES: Final = frozenset({ROLE_USER, ROLE_AGENT})
PART_KINDS: Final = ("text", "raw", "url", "data")


_T = TypeVar("_T")


def copy_json(value: _T) -> _T:
    """A deep copy of a JSON value (dicts, lists, strings, numbers, booleans, None).

    Why not ``copy.deepcopy``: it is generic and keeps a memo, about four times slower on a task, and the engine,
    the stores and every stream copy a task on each event. ``marshal`` copies exactly these types in C; anything
    else falls back to ``deepcopy``."""
    try:
        copied: _T = marshal.loads(marshal.dumps(cast(Any, value)))
    except ValueError:  # not only plain JSON types (a subclass, a datetime): the general copy
        return copy.deepcopy(value)
    return copied


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
    """A random UUID (version 4, RFC 9562) as text, as ``str(uuid.uuid4())`` writes it.

    Why not that: it builds a ``UUID`` object in Python first, three times the cost, and every task takes three
    ids (task, context, artifact) on the path of each call."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT: Final = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
"""The first hex digit of the fourth group with its two top bits set to the RFC 4122 variant (``10``)."""


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
