"""MCP server for a node's agents: every skill of every agent is one MCP tool.

Built on the official SDK's low-level ``mcp.server.Server`` rather than ``MCPServer``: a skill already
*is* a JSON Schema pair plus a handler, which maps onto ``tools/list``/``tools/call`` one to one, whereas
``MCPServer`` derives schemas from Python signatures and would need a pydantic model synthesised per
skill. The low-level server also lets the result carry exactly the handler's output as
``structuredContent`` and lets a ``SkillError`` message reach the client (``MCPServer`` hides the text of
any exception that is not its own ``ToolError``).

Tool names. A tool is named by its skill id when no other agent of the node has a skill with that id,
and ``{agent}.{skill}`` for every skill whose id is shared. Skill ids are already valid MCP tool names
(SEP-986 allows ``[A-Za-z0-9_.-]``, 1-128 characters), short names are what a model sees and types, and
a single-agent node, the common case, never pays for a prefix; the prefix appears exactly where it is
needed to keep names unambiguous. Names that would still collide, or an agent name that cannot appear in
a tool name, are refused when the server is built, not at call time.

Errors, as the 2025-11-25 and 2026-07-28 revisions ask:

* arguments that break the skill's input schema: a tool result with ``isError: true`` and the validation
  message (SEP-1303: the model can read it and retry);
* a :class:`SkillError` raised by the handler: ``isError: true`` with its message;
* any other failure (including output that breaks the declared schema): ``isError: true`` with a generic
  message, details in the node log only;
* an unknown tool name: the JSON-RPC error ``-32602`` ``Unknown tool: NAME`` (a protocol error).

HTTP: :func:`setup_mcp` serves stateless 2026-07-28 POSTs natively in aiohttp (:mod:`.fast`, into the SDK's
engine) and mounts the SDK's Streamable HTTP session manager through :mod:`.bridge` for the rest (2025-era
sessions), on one path. A client that disconnects cancels its call on both, and only the configured Host names
are answered (421 to others).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import mcp_types as types
from aiohttp import web
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http import EventStore
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, TransportSecuritySettings
from mcp.shared.exceptions import MCPError

from guildnet.protocols import bounded_json

from ..a2a.store import TaskStore
from ..agent import Agent, InvalidInput, SkillError, TaskContext
from ..callers import Authenticator, Unauthenticated
from .bridge import DEFAULT_BODY_TIMEOUT, Authorize, asgi_handler, read_body
from .caller import CALLER
from .direct import DirectCalls
from .fast import FastPath, is_modern
from .sessions import SessionQuota
from .spans import only_when_collected
from .tasks import DEFAULT_TTL_MS, McpTasks, TaskSupport

log = logging.getLogger(__name__)

DEFAULT_ALLOWED_HOSTS = ("127.0.0.1", "localhost")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_ERROR_TEXT = 1024
Progress = Callable[[float, float | None, str | None], Awaitable[None]]
"""Reports a call's progress: ``(progress, total, message)``, as the SDK's ``report_progress``."""
MANAGER_KEY: web.AppKey[StreamableHTTPSessionManager] = web.AppKey("guildnet_mcp_manager", StreamableHTTPSessionManager)
FAST_PATH_KEY: web.AppKey[FastPath] = web.AppKey("guildnet_mcp_fast_path", FastPath)


@dataclass(frozen=True, slots=True)
class _Entry:
    agent: Agent
    skill_id: str
    tool: types.Tool


class AgentTools:
    """The tool view of a set of agents: listing, input schemas and calls."""

    def __init__(self, agents: Sequence[Agent]) -> None:
        # The first agent offering a skill keeps the bare skill id, later ones get ``agent.skill``: adding an agent
        # never renames a tool existing MCP clients call.
        bare: set[str] = set()
        self._entries: dict[str, _Entry] = {}
        for agent in agents:
            for skill in agent.skills:
                name = skill.id if skill.id not in bare else f"{agent.name}.{skill.id}"
                bare.add(skill.id)
                if not _TOOL_NAME.match(name):
                    raise ValueError(f"tool name {name!r} (agent {agent.name!r}) is not a valid MCP tool name")
                if name in self._entries:
                    raise ValueError(f"two skills would both be published as MCP tool {name!r}")
                tool = types.Tool(
                    name=name,
                    title=skill.name,
                    description=skill.description or skill.name,
                    input_schema=skill.input_schema,
                    output_schema=skill.output_schema,
                    _meta={"guildnet/agent": agent.name, "guildnet/skill": skill.id, "guildnet/tags": skill.tags},
                )
                self._entries[name] = _Entry(agent, skill.id, tool)
        self._tools = [entry.tool for entry in self._entries.values()]

    @property
    def tools(self) -> list[types.Tool]:
        """Tools in a fixed order (2026-07-28 asks for a deterministic ``tools/list``)."""
        return list(self._tools)

    @property
    def owners(self) -> dict[str, str]:
        """Each tool's agent, by tool name."""
        return {name: entry.agent.name for name, entry in self._entries.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def input_schema(self, name: str) -> dict[str, Any] | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.tool.input_schema

    async def call(self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        """The ``tools/call`` handler: :meth:`run` with what it needs of the SDK's request context."""
        return await self.run(params, progress=ctx.session.report_progress, meta=ctx.meta,
                              protocol_version=ctx.protocol_version)

    async def run(self, params: types.CallToolRequestParams, *, progress: Progress, meta: Mapping[str, Any] | None,
                  protocol_version: str) -> types.CallToolResult:
        """Call the tool ``params`` names; ``progress`` reports progress as the SDK's session does (the fast path
        hands its own exchange's, :mod:`.direct`)."""
        entry = self._entries.get(params.name)
        if entry is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        arguments = params.arguments or {}
        steps = 0

        async def report(message: str) -> None:
            nonlocal steps
            steps += 1
            await progress(steps, None, message)

        traceparent = (meta or {}).get("traceparent")
        task = TaskContext(
            task_id=uuid.uuid4().hex,
            skill_id=entry.skill_id,
            traceparent=traceparent if isinstance(traceparent, str) else None,
            progress=report,
            metadata={"transport": "mcp", "protocol_version": protocol_version},
        )
        try:
            output = await entry.agent.call(entry.skill_id, arguments, task)  # call() runs check_input first
        except InvalidInput as exc:
            return _error_result(str(exc))
        except SkillError as exc:
            return _error_result(str(exc) or f"skill {entry.skill_id!r} failed")
        except Exception:
            log.exception("MCP tool %r (agent %r) failed", params.name, entry.agent.name)
            return _error_result(f"Error executing tool {params.name}: internal error")
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=json.dumps(output, ensure_ascii=False))],
            structured_content=output,
        )


def _error_result(message: str) -> types.CallToolResult:
    # validation messages quote the offending input, which may be megabytes: the model needs the start only
    text = message if len(message) <= MAX_ERROR_TEXT else message[:MAX_ERROR_TEXT - 1] + "\u2026"
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def build_server(agents: Sequence[Agent] | AgentTools, *, name: str = "guildnet-node", version: str = "",
                 instructions: str | None = None, base: Server[Any] | None = None) -> Server[Any]:
    """Return an MCP server whose tools are the agents' skills (``agents``, or their tool view).

    With ``base`` (a server that already has handlers, e.g. the conformance fixtures' resources,
    prompts and MCP-only tools) the agent tools are put in front of its own: ``tools/list`` returns the
    agent tools followed by the base's, and ``tools/call`` for any other name goes to the base handler.
    """
    toolset = agents if isinstance(agents, AgentTools) else AgentTools(agents)
    server = base if base is not None else Server(name, version=version, instructions=instructions)
    list_next = server.get_request_handler("tools/list")
    call_next = server.get_request_handler("tools/call")
    schema_next = server.get_tool_input_schema

    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        tools = toolset.tools
        if list_next is not None:
            tools += cast(types.ListToolsResult, await list_next.handler(ctx, params)).tools
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
                        ) -> types.CallToolResult | types.InputRequiredResult:
        if call_next is not None and params.name not in toolset:
            # A registered tools/call handler returns one of these (the SDK's handler signature says so).
            return cast(types.CallToolResult | types.InputRequiredResult, await call_next.handler(ctx, params))
        return await toolset.call(ctx, params)

    def input_schema(tool_name: str) -> dict[str, Any] | None:
        # Lets the SDK check Mcp-Param-* headers without running tools/list on every call.
        schema = toolset.input_schema(tool_name)
        if schema is None and schema_next is not None:
            found = schema_next(tool_name)
            return None if found is None else dict(found)
        return schema

    server.add_request_handler("tools/list", types.PaginatedRequestParams, list_tools)
    server.add_request_handler("tools/call", types.CallToolRequestParams, call_tool)
    server.get_tool_input_schema = input_schema
    only_when_collected(server)
    return server


def transport_security(allowed_hosts: Iterable[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection that accepts the given host names on any port (and their origins)."""
    hosts: list[str] = []
    origins: list[str] = []
    for host in allowed_hosts:
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        hosts += [host, f"{host}:*"]
        origins += [f"{scheme}://{host}{port}" for scheme in ("http", "https") for port in ("", ":*")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


def setup_mcp(app: web.Application, agents: Sequence[Agent], *, path: str = "/mcp",
              allowed_hosts: Iterable[str] = DEFAULT_ALLOWED_HOSTS, server: Server[Any] | None = None,
              name: str = "guildnet-node", version: str = "", instructions: str | None = None,
              max_body_size: int = DEFAULT_MAX_REQUEST_BODY_SIZE, event_store: EventStore | None = None,
              retry_interval_ms: int | None = None, body_timeout: float = DEFAULT_BODY_TIMEOUT,
              authenticator: Authenticator | None = None, quota: SessionQuota | None = None,
              task_store: TaskStore | None = None, task_support: Mapping[str, TaskSupport] | None = None,
              input_first: Collection[str] = (), task_ttl_ms: int | None = DEFAULT_TTL_MS,
              fast_path: bool = True) -> StreamableHTTPSessionManager:
    """Serve the agents as MCP tools at ``path`` of ``app`` (Streamable HTTP, both protocol eras).

    ``allowed_hosts`` are the host names clients use to reach the node (without port); add the node's
    public name when it runs behind one. ``server`` is an optional base server (see :func:`build_server`).
    ``max_body_size`` bytes (413 above) must arrive within ``body_timeout`` seconds (408 otherwise).
    ``event_store``/``retry_interval_ms`` enable 2025-era SSE resumption (``Last-Event-ID``); the
    stateless 2026-07-28 revision has no resumption and ignores them. With ``authenticator``, a request proving no
    caller the node accepts is refused (401) before the SDK sees it. 2025-era sessions idle out after
    ``quota.idle`` seconds, and one address holds at most ``quota.per_address`` (:mod:`.sessions`).
    The SDK's session manager runs from app startup to app shutdown; shutting down cancels open MCP
    streams and calls so the aiohttp server does not wait on 2025-era clients' idle event streams.

    With ``task_store`` (the node's A2A task store, opened by the A2A service) the server offers MCP tasks
    (:mod:`.tasks`): every agent tool, and the other tools ``task_support`` names, can run as a durable task, readable
    for ``task_ttl_ms`` once settled (the store's retention).
    ``fast_path`` serves stateless 2026-07-28 POSTs natively in aiohttp (:mod:`.fast`); 2025-era sessions always
    go through the SDK's transport.
    """
    toolset = AgentTools(agents)
    mcp_server = build_server(toolset, name=name, version=version, instructions=instructions, base=server)
    tasks = None
    if task_store is not None:
        tasks = McpTasks(task_store, agent_tools=toolset.owners, default_namespace=name, support=task_support,
                         input_first=input_first, ttl_ms=task_ttl_ms)
        tasks.install(mcp_server)
    security = transport_security(allowed_hosts)
    server_state = _LifespanState(mcp_server)  # before the manager, which enters the server's lifespan at startup
    manager = StreamableHTTPSessionManager(
        app=mcp_server,
        json_response=False,
        security_settings=security,
        max_request_body_size=max_body_size,
        event_store=event_store,
        retry_interval=retry_interval_ms,
        session_idle_timeout=(quota := quota or SessionQuota()).idle,
    )
    app[MANAGER_KEY] = manager
    authorize = _authorize(authenticator, quota)
    handler = asgi_handler(manager.handle_request, body_timeout=body_timeout, authorize=authorize,
                           max_body_size=max_body_size)
    fast = app[FAST_PATH_KEY] = FastPath(mcp_server, security, lifespan_state=server_state.get,
                                         direct=DirectCalls(mcp_server, toolset, tasks))

    async def native(request: web.Request) -> web.StreamResponse:
        body = await read_body(request, body_timeout=body_timeout, max_body_size=max_body_size)
        if isinstance(body, web.StreamResponse):
            return body
        refusal = await authorize(request, body)
        if refusal is not None:
            return refusal
        if b"subscriptions/listen" in body:  # a long-lived stream: the SDK transport has the subscription bus
            return await handler(request, body)
        return await fast.handle(request, body)

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            response = await (native(request) if fast_path and is_modern(request) else handler(request, None))
        except BaseException:
            quota.settle(request, None)
            raise
        quota.settle(request, response)
        return response

    app.router.add_route("*", path, handle)
    stop = asyncio.Event()

    async def run_manager(started: asyncio.Future[None]) -> None:
        async with manager.run():
            started.set_result(None)
            await stop.wait()

    async def lifespan(_app: web.Application) -> AsyncIterator[None]:
        # The manager's anyio task group must be entered and left by one task; aiohttp may run the
        # startup and cleanup halves of this context in different tasks, so the manager gets its own.
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        runner = asyncio.create_task(run_manager(started), name="mcp-session-manager")
        await asyncio.wait([started, runner], return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            runner.result()  # startup failed: raise its error
        try:
            yield
        finally:
            stop.set()
            await runner

    async def on_shutdown(_app: web.Application) -> None:
        if tasks is not None:  # before cleanup, where the task store closes
            await tasks.stop()
        stop.set()

    app.cleanup_ctx.append(lifespan)
    app.on_shutdown.append(on_shutdown)
    return manager


class _LifespanState:
    """What the server's lifespan yielded, while it is open: the SDK's session manager enters the lifespan once, at
    app startup, and hands the state to every request; the fast path hands the same state to its handlers."""

    def __init__(self, server: Server[Any]) -> None:
        self.value: Any = None
        inner = server.lifespan

        @contextlib.asynccontextmanager
        async def observed(server: Server[Any]) -> AsyncIterator[Any]:
            async with inner(server) as state:
                self.value = state
                try:
                    yield state
                finally:
                    self.value = None

        server.lifespan = observed

    def get(self) -> Any:
        return self.value


def _authorize(authenticator: Authenticator | None, quota: SessionQuota) -> Authorize:
    """Before the SDK sees a request: its caller (when the node authenticates), and the address's session quota."""
    async def authorize(request: web.Request, body: bytes) -> web.StreamResponse | None:
        if authenticator is not None:
            try:
                request[CALLER] = await authenticator.caller(
                    authorization=request.headers.get("Authorization"), remote=request.remote, method=request.method,
                    path=request.path_qs, body=body)
            except Unauthenticated as exc:
                return web.json_response({"jsonrpc": "2.0", "id": None,
                                          "error": {"code": -32600, "message": f"Unauthenticated: {exc}"}},
                                         status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return quota.refuse(request, opens_session=_is_initialize(body))

    return authorize


def _is_initialize(body: bytes) -> bool:
    if b"initialize" not in body:  # the common case, without parsing
        return False
    try:
        message = bounded_json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(message, dict) and message.get("method") == "initialize"


async def serve_stdio(agents: Sequence[Agent], *, name: str = "guildnet-node", version: str = "",
                      instructions: str | None = None) -> None:
    """Serve the agents as MCP tools on this process's stdin/stdout until stdin closes."""
    server = build_server(agents, name=name, version=version, instructions=instructions)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
