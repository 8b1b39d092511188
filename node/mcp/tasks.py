"""MCP tasks: a ``tools/call`` that may take minutes becomes a durable task the caller polls (SEP-2663).

A 2026-07-28 client that declares the ``io.modelcontextprotocol/tasks`` extension (in a request's ``_meta``
client capabilities) and calls a task-supporting tool gets a ``CreateTaskResult`` at once; the tool runs
on in the node, and ``tasks/get`` reports its status and, once settled, its result or error inline. ``tasks/update``
answers the input requests a task is waiting on, ``tasks/cancel`` stops it. (``tasks/result`` and ``tasks/list``
belong to the 2025 experimental surface SEP-2663 removed; they stay unknown methods, ``-32601``.)

The task is the node's A2A task (:mod:`guildnet.protocols.mcp_tasks`): it is written to the same
:class:`~guildnet.node.a2a.store.TaskStore` the A2A service uses, under the agent whose tool it is, owned by the
authenticated caller (None: anonymous), and is durable before the ``CreateTaskResult`` leaves. So it outlives a node
restart, A2A ``GetTask`` shows it to the same caller, and another caller's task id is answered as unknown (never
revealed). A running tool's progress messages (e.g. a delegated call reporting the peer's progress) become the
task's status message.

Input within a task is MRTR (SEP-2322) run by the node: the tool answers a round with ``InputRequiredResult``, the
task parks as ``input_required`` with those requests, and once ``tasks/update`` has answered every one, the tool runs
again with the answers and the sealed ``requestState`` it returned. Nothing about a round lives only in memory, so
a parked task can be resumed after a restart as well.

Which tools support tasks is the node's choice: every agent skill (``optional``: a client without the extension
still gets a plain result), plus what ``support`` names for other tools. ``required`` refuses a client without the
extension with ``-32021`` and names the extension in ``data.requiredCapabilities``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Literal, cast

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import decode_header_value
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from guildnet.protocols import mcp_tasks
from guildnet.protocols.a2a import TaskRecord

from ..a2a.store import TaskStore
from .caller import caller_of

log = logging.getLogger(__name__)

TaskSupport = Literal["optional", "required"]
DEFAULT_TTL_MS = 7 * 24 * 3600 * 1000
"""How long a settled task stays readable: the node's task retention (``task_retention_days``, 7 by default)."""
DEFAULT_POLL_INTERVAL_MS = 1000
SHUTDOWN = "the node shut down while the task ran"
_MISSING_TASKS: dict[str, Any] = {"requiredCapabilities": {"extensions": {mcp_tasks.EXTENSION: {}}}}


class TaskIdParams(BaseModel):
    """``tasks/get`` and ``tasks/cancel`` params."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    task_id: str = Field(alias="taskId", max_length=128)


class UpdateParams(TaskIdParams):
    """``tasks/update`` params: responses keyed by the ids of the task's input requests."""

    input_responses: dict[str, Any] = Field(alias="inputResponses")


ToolCall = Callable[[ServerRequestContext[Any], types.CallToolRequestParams], Awaitable[Any]]


class _ProgressSession:
    """Stands in for a finished request's session while its task runs: progress becomes the task's status."""

    def __init__(self, session: Any, report: Callable[[str], None]) -> None:
        self._session = session
        self._report = report

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        self._report(message or (f"{progress:g}/{total:g}" if total else f"{progress:g}"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@dataclasses.dataclass
class _Live:
    record: TaskRecord
    runner: asyncio.Task[None] | None = None


class McpTasks:
    """The tasks extension of one MCP server, over the node's task store (see the module docstring)."""

    def __init__(self, store: TaskStore, *, agent_tools: Mapping[str, str], default_namespace: str,
                 support: Mapping[str, TaskSupport] | None = None, input_first: Collection[str] = (),
                 ttl_ms: int | None = DEFAULT_TTL_MS, poll_interval_ms: int = DEFAULT_POLL_INTERVAL_MS) -> None:
        """``agent_tools`` maps each agent tool to its agent (the task's namespace in the store); other tools'
        tasks go under ``default_namespace``. ``input_first`` tools gather their input by MRTR before the task is
        created: a call without ``inputResponses`` runs as a plain call."""
        self.store = store
        self.agent_tools = dict(agent_tools)
        self.default_namespace = default_namespace
        optional: TaskSupport = "optional"
        self.support: dict[str, TaskSupport] = dict.fromkeys(agent_tools, optional)
        self.support.update(support or {})
        self.input_first = frozenset(input_first)
        self.ttl_ms = ttl_ms
        self.poll_interval_ms = poll_interval_ms
        self.namespaces = tuple(dict.fromkeys([*self.agent_tools.values(), default_namespace]))
        self.live: dict[str, _Live] = {}
        self.closing = False
        self._call: ToolCall | None = None
        self.middleware: Any = None
        """The middleware :meth:`install` put on the server (the fast path recognises it)."""

    # ---- wiring ---------------------------------------------------------------------------------------------
    def install(self, server: Server[Any]) -> None:
        """Advertise the extension, serve ``tasks/*``, and route task-supporting ``tools/call`` through tasks."""
        entry = server.get_request_handler("tools/call")
        if entry is None:
            raise ValueError("the server has no tools/call handler to run tasks with")
        self._call = cast(ToolCall, entry.handler)
        server.extensions[mcp_tasks.EXTENSION] = {}
        server.add_request_handler("tasks/get", TaskIdParams, self.get)
        server.add_request_handler("tasks/update", UpdateParams, self.update)
        server.add_request_handler("tasks/cancel", TaskIdParams, self.cancel)
        stamp = server.server_info_stamp

        async def middleware(ctx: ServerRequestContext[Any], call_next: Callable[[ServerRequestContext[Any]],
                                                                                 Awaitable[Any]]) -> Any:
            created = await self.maybe_create(ctx) if ctx.method == "tools/call" else None
            if created is None:
                return await call_next(ctx)
            return {**created, "_meta": {types.SERVER_INFO_META_KEY: stamp}}

        # a middleware returns the CreateTaskResult as it is: the SDK would sieve it as a CallToolResult
        self.middleware = middleware
        server.middleware.append(cast(Any, middleware))

    async def stop(self) -> None:
        """Stop every running task (they settle as failed, saying the node shut down)."""
        self.closing = True
        runners = [live.runner for live in self.live.values() if live.runner is not None]
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

    # ---- tools/call ----------------------------------------------------------------------------------------
    async def maybe_create(self, ctx: ServerRequestContext[Any]) -> dict[str, Any] | None:
        """A ``CreateTaskResult`` when this ``tools/call`` becomes a task; None to run it as a plain call."""
        name = (ctx.params or {}).get("name")
        support = self.support.get(name) if isinstance(name, str) else None
        if support is None:
            return None
        if not negotiated(ctx):
            if support == "required":
                raise MCPError(types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                               f"tool {name!r} runs only as a task: declare the {mcp_tasks.EXTENSION} "
                               "extension in the client capabilities", data=_MISSING_TASKS)
            return None
        try:
            params = types.CallToolRequestParams.model_validate(ctx.params or {}, by_name=False)
        except ValidationError:
            return None  # the handler path answers with the SDK's own error
        if params.name in self.input_first and not params.input_responses:
            return None
        namespace = self.agent_tools.get(params.name, self.default_namespace)
        record = mcp_tasks.new_record(namespace, params.name, params.arguments or {}, caller_of(ctx))
        await self.store.put(record, new=True)  # durable before the client hears of it
        self._start(record, ctx, params)
        return {"resultType": "task", **self._envelope(record)}

    def _start(self, record: TaskRecord, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> None:
        live = self.live[record.id] = _Live(record)
        live.runner = asyncio.create_task(self._run(live, ctx, params), name=f"mcp-task-{record.id}")

    async def _run(self, live: _Live, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> None:
        assert self._call is not None

        def progress(text: str) -> None:
            live.record = mcp_tasks.with_progress(live.record, text)

        task_ctx = dataclasses.replace(ctx, session=cast(Any, _ProgressSession(ctx.session, progress)),
                                       params=params.model_dump(mode="json", by_alias=True, exclude_none=True))
        try:
            try:
                result = _wire(await self._call(task_ctx, params))
            except asyncio.CancelledError:
                settled = mcp_tasks.failed(live.record, mcp_tasks.INTERNAL_ERROR, SHUTDOWN) if self.closing \
                    else mcp_tasks.cancelled(live.record)
                await asyncio.shield(self.store.put(settled, new=False))
                live.record = settled
                return
            except MCPError as exc:
                settled = mcp_tasks.failed(live.record, exc.error.code, exc.error.message)
            except Exception:
                log.exception("MCP task %s (tool %s) failed", live.record.id, params.name)
                settled = mcp_tasks.failed(live.record, mcp_tasks.INTERNAL_ERROR, "Internal error")
            else:
                if result.get("resultType") == "input_required" or "inputRequests" in result:
                    settled = mcp_tasks.input_required(live.record, result.get("inputRequests") or {},
                                                       result.get("requestState"))
                else:
                    settled = mcp_tasks.completed(live.record, result)
            # durable before anyone sees it: tasks/get answers from live.record, A2A GetTask from the store
            await self.store.put(settled, new=False)
            live.record = settled
        except Exception:
            log.exception("MCP task %s could not be stored", live.record.id)
        finally:
            if self.live.get(live.record.id) is live:  # the store has its last state (a rerun has its own entry)
                del self.live[live.record.id]

    # ---- tasks/* -------------------------------------------------------------------------------------------
    async def _find(self, ctx: ServerRequestContext[Any], task_id: str) -> TaskRecord:
        """The caller's task ``task_id``; an unknown id and another caller's task are both ``-32602``."""
        if not negotiated(ctx):
            raise MCPError(types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                           f"tasks/* needs the {mcp_tasks.EXTENSION} extension in the client capabilities",
                           data=_MISSING_TASKS)
        name = ctx.request.headers.get("mcp-name") if ctx.request is not None else None
        if name is not None and decode_header_value(name.strip()) != task_id:
            raise MCPError(types.HEADER_MISMATCH, "Mcp-Name header does not match the request body's 'taskId'")
        live = self.live.get(task_id)
        record = live.record if live is not None else None
        for namespace in () if record is not None else self.namespaces:
            if (record := await self.store.get(namespace, task_id)) is not None:
                break
        if record is None or record.owner != caller_of(ctx) or not mcp_tasks.is_mcp_task(record):
            raise MCPError(types.INVALID_PARAMS, f"Unknown task: {task_id}")
        return record

    def _envelope(self, record: TaskRecord) -> dict[str, Any]:
        return mcp_tasks.envelope(record, ttl_ms=self.ttl_ms, poll_interval_ms=self.poll_interval_ms)

    async def get(self, ctx: ServerRequestContext[Any], params: TaskIdParams) -> dict[str, Any]:
        record = await self._find(ctx, params.task_id)
        return {"resultType": "complete",
                **mcp_tasks.detailed(record, ttl_ms=self.ttl_ms, poll_interval_ms=self.poll_interval_ms)}

    async def update(self, ctx: ServerRequestContext[Any], params: UpdateParams) -> dict[str, Any]:
        """Take input responses; once every pending request is answered, the tool runs again with them."""
        record = await self._find(ctx, params.task_id)
        if mcp_tasks.status(record) != mcp_tasks.INPUT_REQUIRED:
            return {"resultType": "complete"}  # nothing is waiting: late or repeated answers change nothing
        updated, answers = mcp_tasks.answer(record, params.input_responses)
        if updated.task == record.task:
            return {"resultType": "complete"}
        await self.store.put(updated, new=False)
        if answers is not None:  # all answered: the tool runs again with every answer and its sealed state
            state = mcp_tasks.mcp_state(record)
            raw = {"name": state["tool"], "arguments": _arguments(record), "inputResponses": answers,
                   "_meta": dict(ctx.meta or {}) if isinstance(ctx.meta, Mapping) else {}}
            if state.get("requestState") is not None:
                raw["requestState"] = state["requestState"]
            try:
                rerun = types.CallToolRequestParams.model_validate(raw, by_name=False)
            except ValidationError as exc:
                settled = mcp_tasks.failed(updated, types.INVALID_PARAMS, f"invalid input responses: {exc}")
                await self.store.put(settled, new=False)
                return {"resultType": "complete"}
            self._start(updated, dataclasses.replace(ctx, method="tools/call"), rerun)
        return {"resultType": "complete"}

    async def cancel(self, ctx: ServerRequestContext[Any], params: TaskIdParams) -> dict[str, Any]:
        """Stop a running task, or settle a waiting one, as cancelled; a settled task stays as it is."""
        record = await self._find(ctx, params.task_id)
        live = self.live.get(record.id)
        if live is not None and live.runner is not None and not live.runner.done():
            live.runner.cancel()  # the run settles it as cancelled, durably, before this returns
            await asyncio.gather(live.runner, return_exceptions=True)
        elif mcp_tasks.status(record) in (mcp_tasks.WORKING, mcp_tasks.INPUT_REQUIRED):
            await self.store.put(mcp_tasks.cancelled(record), new=False)
        return {"resultType": "complete"}


def negotiated(ctx: ServerRequestContext[Any]) -> bool:
    """Whether this request's client declared the tasks extension (per request in ``_meta``, or in the capabilities
    its connection carries). Only at 2026-07-28: the extension's shapes cannot travel on a 2025-era wire (whose
    ``tools/call`` result is a ``CallToolResult``), so a 2025-era session gets plain calls, as before."""
    if ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
        return False
    if declared_tasks(ctx.meta):
        return True
    capabilities = ctx.session.client_capabilities if ctx.session is not None else None
    extensions = capabilities.extensions if capabilities is not None else None
    return isinstance(extensions, Mapping) and mcp_tasks.EXTENSION in extensions


def declared_tasks(meta: Any) -> bool:
    """Whether a request's ``_meta`` envelope declares the tasks extension in its client capabilities."""
    declared = meta.get(types.CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, Mapping) else None
    return isinstance(declared, Mapping) and isinstance(declared.get("extensions"), Mapping) \
        and mcp_tasks.EXTENSION in declared["extensions"]


def _wire(result: Any) -> dict[str, Any]:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(result, Mapping):
        return dict(result)
    raise TypeError(f"tools/call handler returned {type(result).__name__}")


def _arguments(record: TaskRecord) -> dict[str, Any]:
    history: Sequence[Any] = record.task.get("history") or ()
    for part in history[0].get("parts", ()) if history else ():
        if isinstance(part.get("data"), dict):
            return dict(part["data"])
    return {}
