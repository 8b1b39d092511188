"""An agent's A2A tasks at run time: executors running in asyncio tasks, the task store, and subscribers.

The task engine (:mod:`guildnet.protocols.a2a.engine`) decides what each event does; this module carries its
effects out (stores, tells subscribers, wakes callers) and offers the operations every binding maps its
methods to: :meth:`AgentTasks.send`, :meth:`~AgentTasks.stream`, :meth:`~AgentTasks.get`,
:meth:`~AgentTasks.list`, :meth:`~AgentTasks.cancel` and :meth:`~AgentTasks.subscribe`. A binding only reads
requests and writes results in its own shape, so every binding behaves the same by construction.

Running tasks live in memory; the store sees a task when its id first leaves the process (a stream's first
event, a ``returnImmediately`` reply) and when it settles (terminal or interrupted). Every settled state is
durable before anyone hears of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any

from guildnet.protocols import a2a
from guildnet.protocols.a2a import JSON, A2AError, Effect, Emit, Settle, Store, TaskMachine, TaskRecord
from guildnet.protocols.a2a.push import parse_push_config

from .executor import Executor, Invocation
from .store import TaskStore

if TYPE_CHECKING:
    from .push import PushService

log = logging.getLogger(__name__)

Subscriber = asyncio.Queue[JSON | None]
"""A stream's queue of events; ``None`` ends the stream, an empty dict says the run died without settling."""
_END = None


class TaskRun:
    """One execution of an executor for one task: the executor's only way to report."""

    def __init__(self, tasks: AgentTasks, machine: TaskMachine) -> None:
        self._tasks = tasks
        self.machine = machine
        self.settled = asyncio.Event()
        self.runner: asyncio.Task[None] | None = None

    @property
    def message(self) -> JSON:
        return self.machine.message

    @property
    def caller(self) -> str | None:
        """The authenticated caller whose task this is (None: anonymous)."""
        return self.machine.owner

    @property
    def task_id(self) -> str:
        return self.machine.task_id

    @property
    def context_id(self) -> str:
        return self.machine.context_id

    @property
    def record(self) -> TaskRecord | None:
        return self.machine.record

    @property
    def task(self) -> JSON | None:
        return self.machine.record.task if self.machine.record is not None else None

    @property
    def state(self) -> str | None:
        return self.machine.record.state if self.machine.record is not None else None

    async def apply(self, effects: Sequence[Effect]) -> None:
        await self._tasks.carry_out(self.task_id, effects, self)

    async def reply(self, parts: Sequence[JSON]) -> None:
        """Answer with one agent message and no task (only for a message that starts no task)."""
        await self.apply(self.machine.respond(parts))

    async def working(self, text: str | None = None) -> None:
        """Move to WORKING, optionally with a progress message."""
        await self.apply(self.machine.working(text))

    async def artifact(self, parts: Sequence[JSON], *, name: str | None = None, artifact_id: str | None = None,
                       append: bool = False, last_chunk: bool = False) -> None:
        """Add an artifact, or (``append``) add parts to the artifact ``artifact_id`` already sent."""
        await self.apply(self.machine.artifact(parts, name=name, artifact_id=artifact_id, append=append,
                                               last_chunk=last_chunk))

    async def annotate(self, key: str, value: Any) -> None:
        """Set ``task.metadata[key]`` (before :meth:`finish`, so it is stored and sent with the result)."""
        await self.apply(self.machine.annotate(key, value))

    async def finish(self, state: str, text: str | None = None) -> None:
        """Settle the task: a terminal state, or INPUT_REQUIRED / AUTH_REQUIRED to wait for the caller."""
        await self.apply(self.machine.finish(state, text))


class AgentTasks:
    """Everything A2A for one agent's tasks: its executor, its running tasks, its subscribers."""

    def __init__(self, name: str, executor: Executor, store: TaskStore) -> None:
        self.name = name
        self.executor = executor
        self.store = store
        self.live: dict[str, TaskRun] = {}
        self.running: set[TaskRun] = set()  # every run not finished, with a task or not (yet): what shutdown stops
        self.subscribers: dict[str, list[Subscriber]] = {}
        self.closing = False
        self.push: PushService | None = None
        """Where task events go besides streams: callers' webhooks (None: the agent offers no push)."""

    # ---- subscribers ---------------------------------------------------------------------------------------
    def publish(self, task_id: str, event: JSON) -> None:
        for queue in self.subscribers.get(task_id, ()):
            queue.put_nowait(event)

    def close_streams(self, task_id: str) -> None:
        for queue in self.subscribers.pop(task_id, ()):
            queue.put_nowait(_END)

    def _subscribe(self, task_id: str) -> Subscriber:
        queue: Subscriber = asyncio.Queue()
        self.subscribers.setdefault(task_id, []).append(queue)
        return queue

    def _unsubscribe(self, task_id: str, queue: Subscriber) -> None:
        queues = self.subscribers.get(task_id)
        if queues and queue in queues:
            queues.remove(queue)
            if not queues:
                del self.subscribers[task_id]

    async def carry_out(self, task_id: str, effects: Sequence[Effect], run: TaskRun | None = None) -> None:
        """Carry the engine's effects out, in order: a store failure stops here, before anyone is told."""
        for effect in effects:
            if isinstance(effect, Store):
                try:
                    await self.store.put(effect.record, new=effect.new)
                except BaseException:
                    if run is not None:
                        run.machine.store_failed()
                    raise
                if run is not None:
                    run.machine.stored()
            elif isinstance(effect, Emit):
                if run is not None and "task" in effect.event:
                    self.live[task_id] = run
                if self.push is not None:  # queued durably before anyone hears of the event
                    await self.push.task_event(self.name, task_id, effect.event)
                self.publish(task_id, effect.event)
            elif isinstance(effect, Settle):
                self.close_streams(task_id)
                if run is not None:
                    run.settled.set()

    # ---- running -------------------------------------------------------------------------------------------
    async def _lookup(self, task_id: str) -> TaskRecord | None:
        run = self.live.get(task_id)
        if run is not None and run.record is not None:
            return run.record
        return await self.store.get(self.name, task_id)

    async def find(self, task_id: str, caller: str | None) -> TaskRecord:
        """The task ``task_id`` of ``caller``; another caller's task is answered as not found (never revealed)."""
        record = await self._lookup(task_id)
        if record is None or record.owner != caller:
            raise A2AError(a2a.TASK_NOT_FOUND, f"Task not found: {task_id}")
        return record

    async def start(self, params: a2a.SendParams, caller: str | None, *, reveal: bool,
                    subscriber: Subscriber | None = None) -> TaskRun:
        """Admit ``caller``'s message and start its executor; ``subscriber`` hears every event of the run."""
        message = params.message
        existing: TaskRecord | None = None
        running = False
        task_id = message.get("taskId")
        if task_id is not None:
            live = self.live.get(task_id)
            running = live is not None and not live.settled.is_set()
            existing = await self._lookup(task_id)
        admission = a2a.admit(message, existing, running=running, caller=caller)
        if params.push_config is not None:
            if self.push is None:
                raise A2AError(a2a.PUSH_NOT_SUPPORTED)
            config = parse_push_config(params.push_config, task_id=admission.task_id)
            await self.push.create(self.name, caller, config)
        invocation = self.executor.accept(admission.message, existing.task if existing else None)
        skill = invocation.skill_id or (existing.skill if existing else None)
        run = TaskRun(self, TaskMachine(self.name, admission, skill, reveal=reveal, owner=caller))
        if existing is not None:
            self.live[run.task_id] = run
        elif params.return_immediately:  # the caller gets the task at once, so it must exist (and be stored)
            await run.apply(run.machine.start())
        if subscriber is not None:
            self.subscribers.setdefault(run.task_id, []).append(subscriber)
        run.runner = asyncio.create_task(self._execute(run, invocation))
        self.running.add(run)
        return run

    async def _execute(self, run: TaskRun, invocation: Invocation) -> None:
        try:
            await self.executor.execute(invocation, run)
            await run.apply(run.machine.returned())
        except asyncio.CancelledError:
            await run.apply(run.machine.stopped(shutting_down=self.closing))
        except A2AError as exc:
            await self._fail(run, exc.message)
        except Exception:
            log.exception("agent %s: task %s failed", self.name, run.task_id)
            await self._fail(run, "internal error while running the task")
        finally:
            self.running.discard(run)
            if self.live.get(run.task_id) is run:
                del self.live[run.task_id]
            if not run.settled.is_set():  # a failure to store: wake the waiters, they report it
                run.settled.set()
                self.publish(run.task_id, {})
                self.close_streams(run.task_id)

    async def _fail(self, run: TaskRun, reason: str) -> None:
        try:
            await run.apply(run.machine.crashed(reason))
        except Exception:
            log.exception("agent %s: task %s could not be marked failed", self.name, run.task_id)

    async def stop(self) -> None:
        """Stop every run: their tasks settle as FAILED, saying the node shut down."""
        self.closing = True
        runners = [r.runner for r in self.running if r.runner is not None]
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

    # ---- the operations every binding offers ---------------------------------------------------------------
    async def send(self, params: a2a.SendParams, caller: str | None) -> JSON:
        """SendMessage: ``{"task": ...}`` (when it settles, or at once with ``returnImmediately``), or
        ``{"message": ...}`` when the agent answered without a task."""
        run = await self.start(params, caller, reveal=params.return_immediately)
        if not params.return_immediately:
            await run.settled.wait()
        if run.machine.reply is not None:
            return {"message": run.machine.reply}
        if run.record is None:
            raise A2AError(a2a.INTERNAL_ERROR, "the task could not be run")
        if run.settled.is_set() and not run.machine.is_stored:
            raise A2AError(a2a.INTERNAL_ERROR, "the task result could not be stored")
        return {"task": a2a.with_history_length(run.record.task, params.history_length)}

    async def stream(self, params: a2a.SendParams, caller: str | None) -> AsyncGenerator[JSON, None]:
        """SendStreamingMessage: the run's events, up to the one that settles it."""
        queue: Subscriber = asyncio.Queue()
        run = await self.start(params, caller, reveal=True, subscriber=queue)
        if run.record is not None:  # a follow-up: the stream starts with the task as it stands
            queue.put_nowait({"task": _snapshot(run.record.task, params.history_length)})
        return self._drain(run.task_id, queue)

    async def subscribe(self, query: a2a.TaskQuery, caller: str | None) -> AsyncGenerator[JSON, None]:
        """SubscribeToTask: the task as it stands, then its events until it settles."""
        record = await self.find(query.id, caller)
        if record.state in a2a.TERMINAL_STATES:
            raise A2AError(a2a.UNSUPPORTED_OPERATION,
                           f"Task {query.id} is in terminal state {record.state}; there is nothing to subscribe to")
        queue = self._subscribe(query.id)
        queue.put_nowait({"task": _snapshot(record.task, query.history_length)})
        return self._drain(query.id, queue)

    async def _drain(self, task_id: str, queue: Subscriber) -> AsyncGenerator[JSON, None]:
        try:
            while (event := await queue.get()) is not _END:
                if not event:
                    raise A2AError(a2a.INTERNAL_ERROR, "the task could not be run")
                yield event
        finally:
            self._unsubscribe(task_id, queue)

    async def get(self, query: a2a.TaskQuery, caller: str | None) -> JSON:
        record = await self.find(query.id, caller)
        return a2a.with_history_length(record.task, query.history_length)

    async def list(self, query: a2a.ListQuery, caller: str | None) -> JSON:
        """ListTasks: ``caller``'s tasks only."""
        page = await self.store.list(self.name, query, owner=caller)
        tasks = []
        for stored in page.records:
            live = self.live.get(stored.id)
            task = live.record.task if live is not None and live.record is not None else stored.task
            tasks.append(a2a.with_history_length(task, query.history_length,
                                                 include_artifacts=query.include_artifacts))
        return {"tasks": tasks, "nextPageToken": page.next_page_token, "pageSize": query.page_size,
                "totalSize": page.total_size}

    async def cancel(self, query: a2a.TaskQuery, caller: str | None) -> JSON:
        record = await self.find(query.id, caller)
        run = self.live.get(query.id)
        if run is not None and run.runner is not None and not run.settled.is_set():
            run.runner.cancel()
            await asyncio.gather(run.runner, return_exceptions=True)
            if run.state != a2a.CANCELED:
                raise A2AError(a2a.TASK_NOT_CANCELABLE, f"Task {query.id} finished as {run.state} first")
            return a2a.with_history_length(record.task, query.history_length)
        await self.carry_out(record.id, a2a.cancel_waiting(record))  # nothing runs: cancelling is a state change
        return a2a.with_history_length(record.task, query.history_length)


def _snapshot(task: JSON, history_length: int | None) -> JSON:
    """A copy for a stream: the live task keeps changing before the event is written out."""
    return a2a.copy_json(a2a.with_history_length(task, history_length))
