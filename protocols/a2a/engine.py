"""The A2A task engine without I/O: reports in, effects out, in the spirit of h11.

A task is created by a message, runs, and settles: in a terminal state (completed, failed, canceled, rejected)
or an interrupted one (input or auth required) that a follow-up message resumes. Everything about that life
that needs no socket and no database is decided here, so it is the same for every binding (JSON-RPC, HTTP+JSON,
gRPC) and is tested on plain values:

* :func:`admit`: may this message start a task, or continue the one it names?
* :class:`TaskMachine`: how each report of a running executor (progress, an artifact, a result, a crash, a
  cancellation) changes the task, and what must follow from it;
* :func:`cancel_waiting`: cancelling a task that waits for input, when nothing runs.

Each of these returns :data:`Effect` values for the caller to carry out, in order: :class:`Store` the task
durably (and only then go on: a settled state is durable before anyone hears of it), :class:`Emit` a stream
event to the task's subscribers, :class:`Settle` (streams end, blocking callers get their answer).

A task is created lazily, on the executor's first task event, so an executor may instead answer with one
message (:meth:`TaskMachine.respond`) and no task ever exists. It is stored when its id first leaves the
process (``reveal``: a stream, or ``returnImmediately``) and when it settles, so a plain blocking call costs
one write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import JSON, TASK_NOT_CANCELABLE, TASK_NOT_FOUND, UNSUPPORTED_OPERATION, A2AError, invalid_params
from .model import (
    CANCELED,
    COMPLETED,
    FAILED,
    INTERRUPTED_STATES,
    ROLE_AGENT,
    TERMINAL_STATES,
    WORKING,
    artifact_update,
    copy_json,
    new_artifact,
    new_id,
    new_message,
    new_status,
    new_task,
    status_update,
    text_part,
)

Clock = Callable[[], float]
CANCELED_BY_REQUEST = "canceled by request"
SHUT_DOWN = "the node shut down while the task was running"


@dataclass(slots=True)
class TaskRecord:
    """One A2A task as a node keeps it: the wire-shaped task plus what the node indexes it by."""

    agent: str
    task: JSON
    skill: str | None = None
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    owner: str | None = None
    """The authenticated caller whose task it is (None: an anonymous caller's); nobody else sees it."""

    @property
    def id(self) -> str:
        return str(self.task["id"])

    @property
    def context_id(self) -> str:
        return str(self.task["contextId"])

    @property
    def state(self) -> str:
        return str(self.task["status"]["state"])


@dataclass(frozen=True, slots=True)
class Store:
    """Write ``record`` durably (insert when ``new``) before carrying out the effects after this one."""

    record: TaskRecord
    new: bool


@dataclass(frozen=True, slots=True)
class Emit:
    """Tell the task's subscribers ``event``: a StreamResponse (``task``, ``statusUpdate``, ``artifactUpdate``
    or ``message``)."""

    event: JSON


@dataclass(frozen=True, slots=True)
class Settle:
    """The run is over for now (a terminal or interrupted state, or a message reply): streams end, and callers
    waiting for the result get it."""


Effect = Store | Emit | Settle


@dataclass(frozen=True, slots=True)
class Admission:
    """A message accepted to start a task (``record`` None) or to continue ``record``; ``message`` carries the
    task and context ids it belongs to."""

    task_id: str
    context_id: str
    message: JSON
    record: TaskRecord | None


def admit(message: JSON, existing: TaskRecord | None, *, running: bool, caller: str | None = None) -> Admission:
    """Decide what ``message`` from ``caller`` does. When it names a task (``taskId``), ``existing`` is that task
    (None: the node has no such task) and ``running`` says whether an executor still works on it. Another
    caller's task is answered as no task at all: its existence is not revealed."""
    task_id = message.get("taskId")
    if task_id is None:
        context_id = message.get("contextId") or new_id()
        task_id = new_id()
        return Admission(task_id, context_id, {**message, "taskId": task_id, "contextId": context_id}, None)
    if existing is None or existing.owner != caller:
        raise A2AError(TASK_NOT_FOUND, f"Task not found: {task_id}")
    if running:
        raise A2AError(UNSUPPORTED_OPERATION, f"Task {task_id} is still running; wait or subscribe")
    if existing.state in TERMINAL_STATES:
        raise A2AError(UNSUPPORTED_OPERATION,
                       f"Task {task_id} is in terminal state {existing.state} and accepts no more messages")
    if message.get("contextId", existing.context_id) != existing.context_id:
        raise invalid_params(f"contextId does not match the context of task {task_id}")
    return Admission(task_id, existing.context_id, {**message, "taskId": task_id, "contextId": existing.context_id},
                     existing)


def _set_status(record: TaskRecord, state: str, text: str | None, clock: Clock,
                store: Callable[[TaskRecord], Store]) -> list[Effect]:
    """The status change, and its effects: a settling state is stored, told, then settled."""
    message = None
    if text is not None:
        message = new_message(ROLE_AGENT, [text_part(text)], context_id=record.context_id, task_id=record.id)
        record.task.setdefault("history", []).append(message)
    record.task["status"] = new_status(state, message)
    record.updated = clock()
    event = Emit(status_update(record.id, record.context_id, record.task["status"]))
    if state in TERMINAL_STATES or state in INTERRUPTED_STATES:
        return [store(record), event, Settle()]
    return [event]


def cancel_waiting(record: TaskRecord, *, clock: Clock = time.time) -> list[Effect]:
    """Cancel a task no executor runs: a waiting (interrupted) one is canceled by a state change alone; a
    settled one cannot be (-32002)."""
    if record.state in TERMINAL_STATES:
        raise A2AError(TASK_NOT_CANCELABLE, f"Task {record.id} is in terminal state {record.state}")
    return _set_status(record, CANCELED, None, clock, lambda stored: Store(stored, new=False))


class TaskMachine:
    """One run of an executor for one admitted message: each report returns the effects it causes.

    The caller reports how each :class:`Store` effect went: :meth:`stored` after it was carried out, or
    :meth:`store_failed` (the effects after it are then dropped). Until a store succeeds the task counts as not
    stored, so a failed write is never mistaken for a durable one, and the next store inserts it again.
    """

    def __init__(self, agent: str, admission: Admission, skill: str | None, *, reveal: bool,
                 clock: Clock = time.time, owner: str | None = None) -> None:
        self.agent = agent
        self.message = admission.message
        self.task_id = admission.task_id
        self.context_id = admission.context_id
        self.skill = skill
        self.reveal = reveal
        self.clock = clock
        self.owner = owner
        self.record = admission.record
        self.is_stored = admission.record is not None
        self._inserting = False
        self.reply: JSON | None = None
        self.settled = False
        if self.record is not None:  # a follow-up joins the history of the task it continues
            self.record.task.setdefault("history", []).append(self.message)

    def stored(self) -> None:
        """The last :class:`Store` effect was carried out: the record is durable."""
        self.is_stored = True

    def store_failed(self) -> None:
        """The last :class:`Store` effect failed: the next one must insert the task again."""
        self._inserting = False

    def _store(self, record: TaskRecord) -> Store:
        new = not self.is_stored and not self._inserting
        self._inserting = self._inserting or new
        return Store(record, new=new)

    def _settles(self, effects: list[Effect]) -> list[Effect]:
        if any(isinstance(e, Settle) for e in effects):
            self.settled = True
        return effects

    def _task(self, effects: list[Effect]) -> TaskRecord:
        """The task, created by the first task event: stored at once if its id already left the process."""
        if self.record is None:
            if self.reply is not None:
                raise RuntimeError("a run that replied with a message cannot also report task events")
            task = new_task(self.task_id, self.context_id, [self.message])
            self.record = TaskRecord(self.agent, task, self.skill, created=self.clock(), updated=self.clock(),
                                     owner=self.owner)
            if self.reveal:
                effects.append(self._store(self.record))
            effects.append(Emit({"task": copy_json(task)}))
        return self.record

    def start(self) -> list[Effect]:
        """Create the task now (its caller gets it before any work is done: ``returnImmediately``)."""
        effects: list[Effect] = []
        self._task(effects)
        return effects

    def respond(self, parts: Sequence[JSON]) -> list[Effect]:
        """Answer with one agent message and no task (only before any task event)."""
        if self.record is not None or self.reply is not None:
            raise RuntimeError("respond() is only allowed once, before any task event")
        self.reply = new_message(ROLE_AGENT, parts, context_id=self.context_id)
        return self._settles([Emit({"message": self.reply}), Settle()])

    def working(self, text: str | None = None) -> list[Effect]:
        effects: list[Effect] = []
        record = self._task(effects)
        return self._settles(effects + _set_status(record, WORKING, text, self.clock, self._store))

    def artifact(self, parts: Sequence[JSON], *, name: str | None = None, artifact_id: str | None = None,
                 append: bool = False, last_chunk: bool = False) -> list[Effect]:
        """Add an artifact, or (``append``) add parts to the artifact ``artifact_id`` already sent."""
        effects: list[Effect] = []
        record = self._task(effects)
        artifacts: list[JSON] = record.task.setdefault("artifacts", [])
        existing = next((a for a in artifacts if artifact_id and a["artifactId"] == artifact_id), None)
        sent = new_artifact(list(parts), name=name, artifact_id=artifact_id)
        if append and existing is not None:
            existing["parts"].extend(parts)
        else:
            artifacts.append(sent)
        effects.append(Emit(artifact_update(self.task_id, self.context_id, sent, append=append,
                                            last_chunk=last_chunk)))
        return effects

    def annotate(self, key: str, value: Any) -> list[Effect]:
        """Set ``task.metadata[key]``; it is stored and sent with the next settled state."""
        effects: list[Effect] = []
        self._task(effects).task.setdefault("metadata", {})[key] = value
        return effects

    def finish(self, state: str, text: str | None = None) -> list[Effect]:
        """Settle: a terminal state, or INPUT_REQUIRED / AUTH_REQUIRED to wait for the caller."""
        if state not in TERMINAL_STATES and state not in INTERRUPTED_STATES:
            raise ValueError(f"finish() needs a terminal or interrupted state, not {state}")
        effects: list[Effect] = []
        record = self._task(effects)
        return self._settles(effects + _set_status(record, state, text, self.clock, self._store))

    def returned(self) -> list[Effect]:
        """The executor returned: a run that settled nothing has completed its task."""
        return [] if self.settled else self.finish(COMPLETED)

    def stopped(self, *, shutting_down: bool) -> list[Effect]:
        """The executor was stopped: its task is canceled, or failed when the whole node shuts down."""
        if self.record is None or self.settled:
            return []
        return self.finish(FAILED, SHUT_DOWN) if shutting_down else self.finish(CANCELED, CANCELED_BY_REQUEST)

    def crashed(self, reason: str) -> list[Effect]:
        """The executor raised: the task fails with ``reason`` (never the exception's own text, which may hold
        anything), unless the run already answered."""
        if self.reply is not None or self.settled:
            return []
        return self.finish(FAILED, reason)
