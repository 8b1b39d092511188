"""A2A 1.0 server for a node's agents: JSON-RPC over aiohttp, SSE streaming, signed agent cards.

Routes (see :meth:`A2AService.add_routes`):

* ``POST /agents/{name}/a2a`` (and ``.../a2a/``): JSON-RPC endpoint of one agent;
* ``GET /agents/{name}/.well-known/agent-card.json``: its signed card;
* ``GET /.well-known/agent-card.json`` and ``POST /``: the first agent, so a client (or the A2A TCK) that only
  knows the node's base URL finds it.

How a request runs. An :class:`Executor` first *accepts* the message (picks the skill, validates the input
against its schema; a refusal is a JSON-RPC error and no task exists), then *executes* it in its own asyncio
task, reporting through a :class:`TaskRun` (status, artifacts, a message-only reply, or a request for more
input). Running tasks live in memory; the store sees a task when its id first leaves the process (a
stream's first event, a ``returnImmediately`` reply) and when it settles (terminal or interrupted), so a
plain blocking call costs one write. Every settled state is durable before anyone hears of it.

Version handling: only A2A 1.0 is served. A request without ``A2A-Version`` is a 0.3 request (spec §3.6)
and is refused with VersionNotSupportedError (-32009), whatever its method name, exactly as a2a-sdk 1.3
does on a 1.0-only endpoint; 0.3 method names under ``A2A-Version: 1.0`` are unknown methods (-32601).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Literal, Protocol

from aiohttp import web

from guildnet.protocols import a2a, receipts
from guildnet.protocols.a2a import JSON, A2AError
from guildnet.protocols.canonical import content_hash
from guildnet.protocols.did import is_did_key
from guildnet.protocols.keys import SigningKey

from ..agent import Agent, InvalidInput, InvalidOutput, SkillError, TaskContext
from .store import TaskRecord, TaskStore

log = logging.getLogger(__name__)

_JSON_TYPES = ("application/json", "application/a2a+json", "application/json-rpc")
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
                "X-Accel-Buffering": "no"}
_CLOSE = None  # end-of-stream marker on a subscriber queue
BODY_TIMEOUT = 30.0
"""Seconds a client has to send a request body once its headers arrived; a slower one gets 408 (slow-body
clients would otherwise hold a handler and its connection for as long as they like)."""


@dataclass(frozen=True, slots=True)
class Invocation:
    """What an executor accepted: the skill to run and its (already validated) arguments."""

    skill_id: str | None
    arguments: JSON = field(default_factory=dict)


class Executor(Protocol):
    """Turns accepted messages into task events. The node's default is :class:`SkillExecutor`."""

    def accept(self, message: JSON, task: JSON | None) -> Invocation:
        """Check the message (``task`` is the task it continues, if any); raise :class:`A2AError` to refuse."""
        ...

    async def execute(self, invocation: Invocation, run: TaskRun) -> None:
        """Do the work, reporting through ``run``. Returning without settling completes the task."""
        ...


RECEIPT_KEY = "guildnet.receipt"
CALLER_KEY = "guildnet.caller"


class SkillExecutor:
    """Runs an :class:`Agent` skill: input from the message's first JSON ``data`` part (else its text),
    output as one artifact with a ``data`` part and a ``text`` part.

    With the agent's key, a task whose message names its caller (``metadata["guildnet.caller"]``, a did:key)
    ends with a receipt the callee signed (task ids, parties, skill, SHA-256 of canonical input and output,
    times, status) in ``task.metadata["guildnet.receipt"]``, for the caller to countersign.
    """

    def __init__(self, agent: Agent, key: SigningKey | None = None) -> None:
        self.agent = agent
        self.key = key
        self._skill_ids = [s.id for s in agent.skills]

    def accept(self, message: JSON, task: JSON | None) -> Invocation:
        skill_id = a2a.select_skill(message, self._skill_ids)
        arguments = a2a.message_input(message)
        try:
            self.agent.check_input(skill_id, arguments)
        except InvalidInput as exc:
            raise a2a.invalid_params(str(exc)) from exc
        return Invocation(skill_id, arguments)

    async def execute(self, invocation: Invocation, run: TaskRun) -> None:
        skill_id = invocation.skill_id or self._skill_ids[0]
        metadata = dict(run.message.get("metadata") or {})
        traceparent = metadata.get("traceparent")
        ctx = TaskContext(task_id=run.task_id, skill_id=skill_id, progress=run.working, metadata=metadata,
                          traceparent=traceparent if isinstance(traceparent, str) else None)
        started = int(time.time() * 1000)
        try:
            # call(), not run(): wrappers such as the node's process-data recorder hook in there
            output = await self.agent.call(skill_id, invocation.arguments, ctx)
        except (SkillError, InvalidInput) as exc:
            await self._sign_receipt(run, skill_id, invocation.arguments, None, started, "failed")
            await run.finish(a2a.FAILED, str(exc))
            return
        except InvalidOutput as exc:
            log.warning("agent %s: %s", self.agent.name, exc)
            await self._sign_receipt(run, skill_id, invocation.arguments, None, started, "failed")
            await run.finish(a2a.FAILED, "the agent produced output that does not match its schema")
            return
        await run.artifact(a2a.output_artifact(output, skill_id)["parts"], name=f"{skill_id}-result")
        await self._sign_receipt(run, skill_id, invocation.arguments, output, started, "completed")
        await run.finish(a2a.COMPLETED)

    async def _sign_receipt(self, run: TaskRun, skill_id: str, arguments: Any, output: Any, started: int,
                      status: Literal["completed", "failed"]) -> None:
        caller = (run.message.get("metadata") or {}).get(CALLER_KEY)
        if self.key is None or not is_did_key(caller) or caller == self.key.did:
            return
        claim = receipts.TaskClaim(task_id=run.task_id, caller=caller, callee=self.key.did, skill=skill_id,
                                   input_sha256=content_hash(arguments), output_sha256=content_hash(output),
                                   started_at=started, ended_at=max(started, int(time.time() * 1000)),
                                   status=status)
        await run.annotate(RECEIPT_KEY, receipts.callee_sign(claim, self.key))


class TaskRun:
    """One execution of an executor for one task; the executor's only way to report.

    The task itself is created lazily, on the first task event, so an executor may instead answer with a
    single message (:meth:`reply`) and no task ever exists.
    """

    def __init__(self, service: _AgentEndpoint, message: JSON, task_id: str, context_id: str,
                 record: TaskRecord | None, skill_id: str | None) -> None:
        self._endpoint = service
        self.message = message
        self.task_id = task_id
        self.context_id = context_id
        self.record = record
        self.skill_id = skill_id
        self.persisted = record is not None
        self.reply_message: JSON | None = None
        self.settled = asyncio.Event()
        self.runner: asyncio.Task[None] | None = None
        self.reveal = False  # the task id leaves the process before the run settles (stream / returnImmediately)

    @property
    def task(self) -> JSON | None:
        return self.record.task if self.record is not None else None

    @property
    def state(self) -> str | None:
        return self.record.state if self.record is not None else None

    async def _ensure_task(self) -> TaskRecord:
        if self.record is None:
            if self.reply_message is not None:
                raise RuntimeError("a run that replied with a message cannot also report task events")
            task = a2a.new_task(self.task_id, self.context_id, [self.message])
            self.record = TaskRecord(self._endpoint.name, task, self.skill_id)
            self._endpoint.live[self.task_id] = self
            if self.reveal:
                await self._persist()
            self._endpoint.publish(self.task_id, {"task": copy.deepcopy(task)})
        return self.record

    async def _persist(self) -> None:
        assert self.record is not None
        await self._endpoint.store.put(self.record, new=not self.persisted)
        self.persisted = True

    async def reply(self, parts: Sequence[JSON]) -> None:
        """Answer with one agent message and no task (only for a message that starts no task)."""
        if self.record is not None or self.reply_message is not None:
            raise RuntimeError("reply() is only allowed once, before any task event")
        self.reply_message = a2a.new_message(a2a.ROLE_AGENT, parts, context_id=self.context_id)
        self._endpoint.publish_reply(self)
        self.settled.set()

    async def working(self, text: str | None = None) -> None:
        """Move to WORKING, optionally with a progress message."""
        await self._set_status(a2a.WORKING, text)

    async def artifact(self, parts: Sequence[JSON], *, name: str | None = None, artifact_id: str | None = None,
                       append: bool = False, last_chunk: bool = False) -> None:
        """Add an artifact, or (``append``) add parts to the artifact ``artifact_id`` already sent."""
        record = await self._ensure_task()
        artifacts: list[JSON] = record.task.setdefault("artifacts", [])
        existing = next((a for a in artifacts if artifact_id and a["artifactId"] == artifact_id), None)
        if append and existing is not None:
            existing["parts"].extend(parts)
            sent = a2a.new_artifact(list(parts), name=name, artifact_id=artifact_id)
        else:
            sent = a2a.new_artifact(list(parts), name=name, artifact_id=artifact_id)
            artifacts.append(sent)
        self._endpoint.publish(self.task_id, a2a.artifact_update(self.task_id, self.context_id, sent, append=append,
                                                                 last_chunk=last_chunk))

    async def annotate(self, key: str, value: Any) -> None:
        """Set ``task.metadata[key]`` (before :meth:`finish`, so it is stored and sent with the result)."""
        record = await self._ensure_task()
        record.task.setdefault("metadata", {})[key] = value

    async def finish(self, state: str, text: str | None = None) -> None:
        """Settle the task: a terminal state, or INPUT_REQUIRED / AUTH_REQUIRED to wait for the caller."""
        if state not in a2a.TERMINAL_STATES and state not in a2a.INTERRUPTED_STATES:
            raise ValueError(f"finish() needs a terminal or interrupted state, not {state}")
        await self._set_status(state, text)

    async def _set_status(self, state: str, text: str | None) -> None:
        record = await self._ensure_task()
        message = None
        if text is not None:
            message = a2a.new_message(a2a.ROLE_AGENT, [a2a.text_part(text)], context_id=self.context_id,
                                      task_id=self.task_id)
            record.task.setdefault("history", []).append(message)
        record.task["status"] = a2a.new_status(state, message)
        record.updated = time.time()
        settles = state in a2a.TERMINAL_STATES or state in a2a.INTERRUPTED_STATES
        if settles:
            await self._persist()  # durable before anyone (client, subscriber) learns of it
        self._endpoint.publish(self.task_id, a2a.status_update(self.task_id, self.context_id, record.task["status"]),
                               close=settles)
        if settles:
            self.settled.set()


@dataclass
class _Card:
    body: bytes
    etag: str
    last_modified: str


class _AgentEndpoint:
    """Everything A2A for one agent: its executor, its running tasks, its subscribers."""

    def __init__(self, name: str, executor: Executor, store: TaskStore) -> None:
        self.name = name
        self.executor = executor
        self.store = store
        self.live: dict[str, TaskRun] = {}
        self.running: set[TaskRun] = set()  # every run not finished, with a task or not (yet): what shutdown stops
        self.subscribers: dict[str, list[asyncio.Queue[JSON | None]]] = {}
        self.reply_queues: dict[int, asyncio.Queue[JSON | None]] = {}
        self.closing = False

    # ---- events -------------------------------------------------------------------------------------------
    def publish(self, task_id: str, event: JSON, *, close: bool = False) -> None:
        queues = self.subscribers.pop(task_id, None) if close else self.subscribers.get(task_id)
        for queue in queues or ():
            queue.put_nowait(event)
            if close:
                queue.put_nowait(_CLOSE)

    def publish_reply(self, run: TaskRun) -> None:
        queue = self.reply_queues.pop(id(run), None)
        if queue is not None and run.reply_message is not None:
            queue.put_nowait({"message": run.reply_message})
            queue.put_nowait(_CLOSE)

    def subscribe(self, task_id: str) -> asyncio.Queue[JSON | None]:
        queue: asyncio.Queue[JSON | None] = asyncio.Queue()
        self.subscribers.setdefault(task_id, []).append(queue)
        return queue

    def unsubscribe(self, task_id: str, queue: asyncio.Queue[JSON | None]) -> None:
        queues = self.subscribers.get(task_id)
        if queues and queue in queues:
            queues.remove(queue)
            if not queues:
                del self.subscribers[task_id]

    # ---- tasks ---------------------------------------------------------------------------------------------
    async def find(self, task_id: str) -> TaskRecord:
        run = self.live.get(task_id)
        if run is not None and run.record is not None:
            return run.record
        record = await self.store.get(self.name, task_id)
        if record is None:
            raise A2AError(a2a.TASK_NOT_FOUND, f"Task not found: {task_id}")
        return record

    async def start(self, params: a2a.SendParams, *, reveal: bool,
                    reply_queue: asyncio.Queue[JSON | None] | None = None) -> TaskRun:
        message = params.message
        record: TaskRecord | None = None
        task_id = message.get("taskId")
        if task_id is not None:
            if task_id in self.live and not self.live[task_id].settled.is_set():
                raise A2AError(a2a.UNSUPPORTED_OPERATION, f"Task {task_id} is still running; wait or subscribe")
            record = await self.find(task_id)
            if record.state in a2a.TERMINAL_STATES:
                raise A2AError(a2a.UNSUPPORTED_OPERATION,
                               f"Task {task_id} is in terminal state {record.state} and accepts no more messages")
            if message.get("contextId", record.context_id) != record.context_id:
                raise a2a.invalid_params(f"contextId does not match the context of task {task_id}")
            context_id = record.context_id
        else:
            task_id = a2a.new_id()
            context_id = message.get("contextId") or a2a.new_id()
        invocation = self.executor.accept(message, record.task if record else None)
        message = {**message, "taskId": task_id, "contextId": context_id}
        run = TaskRun(self, message, task_id, context_id, record, invocation.skill_id or (record.skill if record
                                                                                          else None))
        run.reveal = reveal
        if record is not None:  # a follow-up: the task exists, the new message joins its history
            record.task.setdefault("history", []).append(message)
            self.live[task_id] = run
        elif params.return_immediately:  # the caller gets the task at once, so it must exist (and be stored)
            await run._ensure_task()
        if reply_queue is not None:
            self.reply_queues[id(run)] = reply_queue
        run.runner = asyncio.create_task(self._execute(run, invocation))
        self.running.add(run)
        return run

    async def _execute(self, run: TaskRun, invocation: Invocation) -> None:
        try:
            await self.executor.execute(invocation, run)
            if not run.settled.is_set():
                await run.finish(a2a.COMPLETED)
        except asyncio.CancelledError:
            if run.record is not None and not run.settled.is_set():
                if self.closing:
                    await run.finish(a2a.FAILED, "the node shut down while the task was running")
                else:
                    await run.finish(a2a.CANCELED, "canceled by request")
        except A2AError as exc:
            await self._fail(run, exc.message)
        except Exception:
            log.exception("agent %s: task %s failed", self.name, run.task_id)
            await self._fail(run, "internal error while running the task")
        finally:
            self.running.discard(run)
            self.reply_queues.pop(id(run), None)
            if self.live.get(run.task_id) is run:
                del self.live[run.task_id]
            if not run.settled.is_set():  # a failure to persist: wake the waiters, they report it
                run.settled.set()
                self.publish(run.task_id, {}, close=True)

    async def _fail(self, run: TaskRun, reason: str) -> None:
        if run.reply_message is None and not run.settled.is_set():
            with contextlib.suppress(Exception):
                await run.finish(a2a.FAILED, reason)


def _http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def _sse(rid: a2a.RequestId, event: JSON) -> bytes:
    return b"".join((b"data: ", a2a.result_response(rid, event), b"\n\n"))


def _sse_error(rid: a2a.RequestId, error: A2AError) -> bytes:
    return b"".join((b"event: error\ndata: ", a2a.error_response(rid, error), b"\n\n"))


Handler = Callable[[_AgentEndpoint, a2a.RpcRequest], Awaitable[Any]]


class A2AService:
    """The A2A face of a node: one JSON-RPC endpoint and one signed card per agent.

    ``executors`` overrides the default :class:`SkillExecutor` per agent name (the TCK's test agent uses it).
    Request bodies are limited by the app's ``client_max_size`` (413 above it) and must arrive within
    ``body_timeout`` seconds (408 otherwise).
    """

    def __init__(self, agents: Sequence[Agent], store: TaskStore, base_url: str,
                 agent_keys: Mapping[str, SigningKey], *, version: str = "0.1.0",
                 provider: tuple[str, str] | None = None, executors: Mapping[str, Executor] | None = None,
                 body_timeout: float = BODY_TIMEOUT) -> None:
        self.body_timeout = body_timeout
        if not agents:
            raise ValueError("an A2A service needs at least one agent")
        missing = [a.name for a in agents if a.name not in agent_keys]
        if missing:
            raise ValueError(f"no signing key for agents {missing}")
        self.store = store
        self.base_url = base_url.rstrip("/")
        self.agents = list(agents)
        overrides = dict(executors or {})
        self.endpoints = {a.name: _AgentEndpoint(a.name, overrides.get(a.name)
                                                 or SkillExecutor(a, agent_keys[a.name]), store)
                          for a in agents}
        started = time.time()
        self.cards: dict[str, JSON] = {}
        self._card_bodies: dict[str, _Card] = {}
        for i, agent in enumerate(self.agents):
            url = f"{self.base_url}/agents/{agent.name}/a2a"
            card = self._card(agent, url, version, provider)
            self.cards[agent.name] = a2a.sign_agent_card(card, agent_keys[agent.name])
            self._card_bodies[agent.name] = self._card_body(self.cards[agent.name], started)
            if i == 0:
                root = a2a.sign_agent_card(self._card(agent, f"{self.base_url}/", version, provider),
                                           agent_keys[agent.name])
                self.root_card = root
                self._root_card = self._card_body(root, started)
        self._methods: dict[str, Handler] = {
            "SendMessage": self._send_message,
            "GetTask": self._get_task,
            "ListTasks": self._list_tasks,
            "CancelTask": self._cancel_task,
            "GetExtendedAgentCard": self._extended_card,
            "CreateTaskPushNotificationConfig": self._push_config,
            "GetTaskPushNotificationConfig": self._push_config,
            "ListTaskPushNotificationConfigs": self._push_config,
            "DeleteTaskPushNotificationConfig": self._push_config,
        }

    @staticmethod
    def _card(agent: Agent, url: str, version: str, provider: tuple[str, str] | None) -> JSON:
        skills = [a2a.CardSkill(s.id, s.name, s.description, tuple(s.tags)) for s in agent.skills]
        return a2a.build_agent_card(name=agent.name, description=agent.description, version=version, url=url,
                                    skills=skills, provider=provider)

    @staticmethod
    def _card_body(card: JSON, started: float) -> _Card:
        body = json.dumps(card, separators=(",", ":"), ensure_ascii=False).encode()
        return _Card(body, f'"{hashlib.sha256(body).hexdigest()[:32]}"', _http_date(started))

    # ---- wiring --------------------------------------------------------------------------------------------
    def add_routes(self, app: web.Application, *, manage_store: bool = True) -> None:
        """Add the A2A routes; with ``manage_store`` the app's lifespan also opens and closes the store."""
        app.router.add_get("/.well-known/agent-card.json", self._root_card_handler)
        app.router.add_post("/", self._root_rpc)
        app.router.add_get("/agents/{name}/.well-known/agent-card.json", self._card_handler)
        app.router.add_post("/agents/{name}/a2a", self._agent_rpc)
        app.router.add_post("/agents/{name}/a2a/", self._agent_rpc)
        app.on_shutdown.append(self._on_shutdown)
        if manage_store:
            app.cleanup_ctx.append(self._store_lifespan)

    async def _store_lifespan(self, _app: web.Application) -> AsyncIterator[None]:
        recovered = await self.store.open()
        if recovered:
            log.warning("%d task(s) left running by a previous process are now FAILED", recovered)
        try:
            yield
        finally:
            await self.close()

    async def stop_runs(self) -> None:
        """Stop running tasks: they settle as FAILED (saying the node shut down), which also answers every
        blocking SendMessage and stream still waiting on them."""
        for endpoint in self.endpoints.values():
            endpoint.closing = True
        runs = [r.runner for ep in self.endpoints.values() for r in ep.running if r.runner is not None]
        for runner in runs:
            runner.cancel()
        await asyncio.gather(*runs, return_exceptions=True)

    async def close(self) -> None:
        """Stop running tasks, then close the store."""
        await self.stop_runs()
        await self.store.close()

    async def _on_shutdown(self, _app: web.Application) -> None:
        # aiohttp waits for open handlers (up to its shutdown_timeout, 60 s) before the cleanup that closes
        # the store; a handler waiting on a hung agent would hold shutdown that long, so runs stop first.
        await self.stop_runs()

    # ---- cards ---------------------------------------------------------------------------------------------
    @staticmethod
    def _serve_card(request: web.Request, card: _Card) -> web.Response:
        headers = {"ETag": card.etag, "Cache-Control": "public, max-age=300", "Last-Modified": card.last_modified}
        if request.headers.get("If-None-Match") in (card.etag, f"W/{card.etag}", "*"):
            return web.Response(status=304, headers=headers)
        return web.Response(body=card.body, content_type="application/json", headers=headers)

    async def _root_card_handler(self, request: web.Request) -> web.Response:
        return self._serve_card(request, self._root_card)

    async def _card_handler(self, request: web.Request) -> web.Response:
        card = self._card_bodies.get(request.match_info["name"])
        if card is None:
            raise web.HTTPNotFound(text="no such agent")
        return self._serve_card(request, card)

    # ---- JSON-RPC ------------------------------------------------------------------------------------------
    async def _root_rpc(self, request: web.Request) -> web.StreamResponse:
        return await self._rpc(request, self.endpoints[self.agents[0].name])

    async def _agent_rpc(self, request: web.Request) -> web.StreamResponse:
        endpoint = self.endpoints.get(request.match_info["name"])
        if endpoint is None:
            raise web.HTTPNotFound(text="no such agent")
        return await self._rpc(request, endpoint)

    async def _rpc(self, request: web.Request, endpoint: _AgentEndpoint) -> web.StreamResponse:
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await request.read()
        except TimeoutError:
            timed_out = web.Response(status=408, text=f"the request body did not arrive within {self.body_timeout:g} s")
            timed_out.force_close()  # Connection: close; aiohttp drops the unread rest within its lingering time
            return timed_out
        try:
            content_type = request.headers.get("Content-Type")
            if content_type is not None and request.content_type not in _JSON_TYPES:
                raise A2AError(a2a.CONTENT_TYPE_NOT_SUPPORTED,
                               f"Content-Type {request.content_type!r} is not supported; use application/json")
            rpc = a2a.parse_request(body)
        except A2AError as exc:
            return _json(a2a.error_response(a2a.request_id_of(body), exc))
        try:
            a2a.check_version(request.headers.get(a2a.VERSION_HEADER) or request.query.get(a2a.VERSION_HEADER))
            if rpc.method == "SendStreamingMessage":
                return await self._stream_message(request, endpoint, rpc)
            if rpc.method == "SubscribeToTask":
                return await self._subscribe(request, endpoint, rpc)
            handler = self._methods.get(rpc.method)
            if handler is None:
                raise A2AError(a2a.METHOD_NOT_FOUND, f"Method not found: {rpc.method}")
            result = await handler(endpoint, rpc)
        except A2AError as exc:
            return _json(a2a.error_response(rpc.id, exc))
        except Exception:
            log.exception("A2A %s failed", rpc.method)
            return _json(a2a.error_response(rpc.id, A2AError(a2a.INTERNAL_ERROR)))
        return _json(a2a.result_response(rpc.id, result))

    async def _send_message(self, endpoint: _AgentEndpoint, rpc: a2a.RpcRequest) -> JSON:
        params = a2a.parse_send_params(rpc.params)
        run = await endpoint.start(params, reveal=params.return_immediately)
        if not params.return_immediately:
            await run.settled.wait()
        if run.reply_message is not None:
            return {"message": run.reply_message}
        if run.record is None:
            raise A2AError(a2a.INTERNAL_ERROR, "the task could not be run")
        if run.settled.is_set() and not run.persisted:
            raise A2AError(a2a.INTERNAL_ERROR, "the task result could not be stored")
        return {"task": a2a.with_history_length(run.record.task, params.history_length)}

    async def _stream_message(self, request: web.Request, endpoint: _AgentEndpoint,
                              rpc: a2a.RpcRequest) -> web.StreamResponse:
        params = a2a.parse_send_params(rpc.params)
        queue: asyncio.Queue[JSON | None] = asyncio.Queue()
        run = await endpoint.start(params, reveal=True, reply_queue=queue)
        # Subscribed before the run's first step (it has not been scheduled yet), so no event is missed.
        endpoint.subscribers.setdefault(run.task_id, []).append(queue)
        if run.record is not None:  # a follow-up: the stream starts with the task as it stands
            queue.put_nowait({"task": _snapshot(run.record.task, params.history_length)})
        return await self._pump(request, endpoint, rpc.id, run.task_id, queue)

    async def _subscribe(self, request: web.Request, endpoint: _AgentEndpoint,
                         rpc: a2a.RpcRequest) -> web.StreamResponse:
        query = a2a.parse_task_query(rpc.params)
        record = await endpoint.find(query.id)
        if record.state in a2a.TERMINAL_STATES:
            raise A2AError(a2a.UNSUPPORTED_OPERATION,
                           f"Task {query.id} is in terminal state {record.state}; there is nothing to subscribe to")
        queue = endpoint.subscribe(query.id)
        queue.put_nowait({"task": _snapshot(record.task, query.history_length)})
        return await self._pump(request, endpoint, rpc.id, query.id, queue)

    async def _pump(self, request: web.Request, endpoint: _AgentEndpoint, rid: a2a.RequestId, task_id: str,
                    queue: asyncio.Queue[JSON | None]) -> web.StreamResponse:
        response = web.StreamResponse(headers=_SSE_HEADERS)
        try:
            await response.prepare(request)
            while (event := await queue.get()) is not _CLOSE:
                if not event:  # the run died without settling (store failure)
                    await response.write(_sse_error(rid, A2AError(a2a.INTERNAL_ERROR, "the task could not be run")))
                    break
                await response.write(_sse(rid, event))
        except (ConnectionResetError, asyncio.CancelledError):
            endpoint.unsubscribe(task_id, queue)
            raise
        finally:
            endpoint.unsubscribe(task_id, queue)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _get_task(self, endpoint: _AgentEndpoint, rpc: a2a.RpcRequest) -> JSON:
        query = a2a.parse_task_query(rpc.params)
        record = await endpoint.find(query.id)
        return a2a.with_history_length(record.task, query.history_length)

    async def _list_tasks(self, endpoint: _AgentEndpoint, rpc: a2a.RpcRequest) -> JSON:
        query = a2a.parse_list_query(rpc.params)
        page = await endpoint.store.list(endpoint.name, query)
        tasks = []
        for record in page.records:
            live = endpoint.live.get(record.id)
            task = live.record.task if live is not None and live.record is not None else record.task
            tasks.append(a2a.with_history_length(task, query.history_length,
                                                 include_artifacts=query.include_artifacts))
        return {"tasks": tasks, "nextPageToken": page.next_page_token, "pageSize": query.page_size,
                "totalSize": page.total_size}

    async def _cancel_task(self, endpoint: _AgentEndpoint, rpc: a2a.RpcRequest) -> JSON:
        query = a2a.parse_task_query(rpc.params)
        run = endpoint.live.get(query.id)
        if run is not None and run.runner is not None and not run.settled.is_set():
            run.runner.cancel()
            await asyncio.gather(run.runner, return_exceptions=True)
            if run.record is None:
                raise A2AError(a2a.TASK_NOT_FOUND, f"Task not found: {query.id}")
            if run.state != a2a.CANCELED:
                raise A2AError(a2a.TASK_NOT_CANCELABLE, f"Task {query.id} finished as {run.state} first")
            return a2a.with_history_length(run.record.task, query.history_length)
        record = await endpoint.find(query.id)
        if record.state in a2a.TERMINAL_STATES:
            raise A2AError(a2a.TASK_NOT_CANCELABLE, f"Task {query.id} is in terminal state {record.state}")
        # Interrupted (waiting for input): nothing runs, so cancelling is a state change.
        idle = TaskRun(endpoint, {}, record.id, record.context_id, record, record.skill)
        await idle.finish(a2a.CANCELED)
        return a2a.with_history_length(record.task, query.history_length)

    async def _extended_card(self, endpoint: _AgentEndpoint, rpc: a2a.RpcRequest) -> JSON:
        raise A2AError(a2a.UNSUPPORTED_OPERATION, "This agent declares no extended agent card")

    async def _push_config(self, endpoint: _AgentEndpoint, rpc: a2a.RpcRequest) -> JSON:
        raise A2AError(a2a.PUSH_NOT_SUPPORTED)


def _snapshot(task: JSON, history_length: int | None) -> JSON:
    """A copy for a stream: the live task keeps changing before the event is written out."""
    return copy.deepcopy(a2a.with_history_length(task, history_length))


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")
