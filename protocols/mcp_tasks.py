"""MCP tasks (the ``io.modelcontextprotocol/tasks`` extension, SEP-2663) as views of A2A task records.

A guildnet MCP task *is* an A2A task: one :class:`~guildnet.protocols.a2a.TaskRecord` in the node's task store,
owned by the caller who started it. What A2A readers need lives where A2A puts it (status, the arguments as the
user message in ``history``, the result as an artifact); what only MCP needs (the tool, the pending input
requests, the MCP result or error, the MRTR state to resume with) lives in ``task.metadata["guildnet.mcp"]``.
This module builds those records and reads them back as the extension's wire shapes; it does no I/O.

State mapping (MCP status <- A2A state):

* ``working`` <- SUBMITTED / WORKING; ``input_required`` <- INPUT_REQUIRED; ``cancelled`` <- CANCELED;
* ``completed`` <- COMPLETED, and FAILED with an MCP tool result (a tool that ran and reported ``isError``:
  SEP-2663 keeps ``failed`` for protocol errors, A2A calls it a failed task);
* ``failed`` <- FAILED with an MCP error, or with none (e.g. the node restarted mid-run: the store's own reason).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from . import a2a
from .a2a import JSON, TaskRecord

EXTENSION: Final = "io.modelcontextprotocol/tasks"
METADATA_KEY: Final = "guildnet.mcp"
INTERNAL_ERROR: Final = -32603

WORKING: Final = "working"
INPUT_REQUIRED: Final = "input_required"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_mcp_task(record: TaskRecord) -> bool:
    """Whether an MCP ``tools/call`` started the task (A2A-started tasks are A2A's to run, cancel and answer)."""
    return isinstance((record.task.get("metadata") or {}).get(METADATA_KEY), dict)


def mcp_state(record: TaskRecord) -> JSON:
    """The MCP-only part of a task (a dict; empty for a task A2A started)."""
    metadata = record.task.get("metadata") or {}
    state = metadata.get(METADATA_KEY)
    return state if isinstance(state, dict) else {}


def new_record(namespace: str, tool: str, arguments: Mapping[str, Any], owner: str | None, *,
               now: float | None = None) -> TaskRecord:
    """A WORKING task for a ``tools/call`` of ``tool`` (``namespace``: the agent whose tool it is)."""
    now = time.time() if now is None else now
    task_id, context_id = uuid.uuid4().hex, a2a.new_id()
    message = a2a.new_message(a2a.ROLE_USER, [a2a.data_part(dict(arguments))], context_id=context_id,
                              task_id=task_id, metadata={"transport": "mcp", "tool": tool})
    task = a2a.new_task(task_id, context_id, [message], state=a2a.WORKING)
    task["metadata"] = {METADATA_KEY: {"tool": tool}}
    return TaskRecord(namespace, task, tool, now, now, owner)


def _settle(record: TaskRecord, state: str, text: str | None, **mcp: Any) -> TaskRecord:
    """A copy of ``record`` in A2A ``state`` with ``mcp`` merged into its MCP part (None values removed)."""
    task = a2a.copy_json(record.task)
    message = None if text is None else a2a.new_message(a2a.ROLE_AGENT, [a2a.text_part(text)],
                                                        context_id=record.context_id, task_id=record.id)
    task["status"] = a2a.new_status(state, message)
    part = task.setdefault("metadata", {}).setdefault(METADATA_KEY, {})
    for key, value in mcp.items():
        if value is None:
            part.pop(key, None)
        else:
            part[key] = value
    return TaskRecord(record.agent, task, record.skill, record.created, time.time(), record.owner)


def with_progress(record: TaskRecord, text: str) -> TaskRecord:
    """Still working, with a progress message (a delegated call reporting the peer's progress)."""
    return _settle(record, a2a.WORKING, text)


def completed(record: TaskRecord, result: Mapping[str, Any]) -> TaskRecord:
    """The tool ran: its ``CallToolResult`` (wire JSON). A tool error is a FAILED A2A task with an MCP result."""
    result = dict(result)
    result.pop("resultType", None)
    task = _settle(record, a2a.FAILED if result.get("isError") else a2a.COMPLETED, _error_text(result),
                   result=result, inputRequests=None, requestState=None, answers=None)
    if not result.get("isError"):
        parts: list[JSON] = []
        if isinstance(result.get("structuredContent"), dict):
            parts.append(a2a.data_part(result["structuredContent"]))
        parts += [a2a.text_part(c["text"]) for c in result.get("content") or () if c.get("type") == "text"]
        task.task["artifacts"] = [a2a.new_artifact(parts, name=f"{record.skill}-result")] if parts else []
    return task


def _error_text(result: Mapping[str, Any]) -> str | None:
    if not result.get("isError"):
        return None
    texts = [c["text"] for c in result.get("content") or () if c.get("type") == "text"]
    return " ".join(texts) or "the tool reported an error"


def failed(record: TaskRecord, code: int, message: str) -> TaskRecord:
    """A protocol-level failure (the handler raised): MCP ``failed`` with a JSON-RPC error."""
    return _settle(record, a2a.FAILED, message, error={"code": code, "message": message}, inputRequests=None,
                   requestState=None, answers=None)


def cancelled(record: TaskRecord) -> TaskRecord:
    return _settle(record, a2a.CANCELED, "cancelled by the caller", inputRequests=None, requestState=None,
                   answers=None)


def input_required(record: TaskRecord, input_requests: Mapping[str, Any], request_state: str | None) -> TaskRecord:
    """The tool asked for input (an MRTR round): park, keeping what resuming needs."""
    return _settle(record, a2a.INPUT_REQUIRED, "waiting for the caller's input", inputRequests=dict(input_requests),
                   requestState=request_state, answers={})


def answer(record: TaskRecord, responses: Mapping[str, Any]) -> tuple[TaskRecord, dict[str, Any] | None]:
    """Take the responses to pending input requests (unknown keys are ignored). Returns the updated record and,
    once every request is answered, all the answers (the tool then runs again with them); else None."""
    state = mcp_state(record)
    pending: dict[str, Any] = dict(state.get("inputRequests") or {})
    answers: dict[str, Any] = dict(state.get("answers") or {})
    for key, value in responses.items():
        if key in pending:
            answers[key] = value
            del pending[key]
    if pending:
        return _settle(record, a2a.INPUT_REQUIRED, "waiting for the caller's input", inputRequests=pending,
                       answers=answers), None
    return _settle(record, a2a.WORKING, None, inputRequests=None, answers=None), answers


def status(record: TaskRecord) -> str:
    state, mcp = record.state, mcp_state(record)
    if state in (a2a.SUBMITTED, a2a.WORKING):
        return WORKING
    if state == a2a.INPUT_REQUIRED:
        return INPUT_REQUIRED
    if state == a2a.CANCELED:
        return CANCELLED
    if state == a2a.COMPLETED or (state == a2a.FAILED and "result" in mcp):
        return COMPLETED
    return FAILED


def _status_text(record: TaskRecord) -> str | None:
    message = record.task["status"].get("message")
    if not message:
        return None
    texts = [p["text"] for p in message.get("parts", ()) if isinstance(p.get("text"), str)]
    return " ".join(texts) or None


def envelope(record: TaskRecord, *, ttl_ms: int | None, poll_interval_ms: int) -> JSON:
    """The ``Task`` fields (what ``CreateTaskResult`` carries besides ``resultType``)."""
    task: JSON = {"taskId": record.id, "status": status(record), "createdAt": _iso(record.created),
                  "lastUpdatedAt": _iso(record.updated), "ttlMs": ttl_ms, "pollIntervalMs": poll_interval_ms}
    text = _status_text(record)
    if text is not None:
        task["statusMessage"] = text
    return task


def detailed(record: TaskRecord, *, ttl_ms: int | None, poll_interval_ms: int) -> JSON:
    """``DetailedTask`` (what ``tasks/get`` returns): the envelope plus the pending input requests, the result or
    the error, as the status has them."""
    task = envelope(record, ttl_ms=ttl_ms, poll_interval_ms=poll_interval_ms)
    mcp = mcp_state(record)
    if task["status"] == INPUT_REQUIRED:
        task["inputRequests"] = dict(mcp.get("inputRequests") or {})
    elif task["status"] == COMPLETED:
        task["result"] = dict(mcp.get("result") or {"content": [], "isError": False})
    elif task["status"] == FAILED:
        task["error"] = dict(mcp.get("error") or {"code": INTERNAL_ERROR,
                                                  "message": _status_text(record) or "the task failed"})
    return task
