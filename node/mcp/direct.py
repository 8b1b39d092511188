"""``tools/call`` of one of the node's own agent tools on the fast path, without the SDK's per-request kernel.

For every request the SDK's ``ServerRunner`` builds a ``Connection`` (an exit stack, an event, the envelope's
capabilities as models), a ``ServerSession`` and a context, lifts ``_meta`` through a model, runs the middleware
chain, and shapes the result. For a plain call of an agent tool most of that has nothing to do: the chain is the
node's own (the OpenTelemetry span, off without a tracer provider, and the tasks extension, which lets a call
through unless the client declared the extension) and the handler is :meth:`AgentTools.run`. Measured in-process
the kernel around a ~24 us tool call was ~75 us (issue 14), the largest cost left at concurrency 1.

:class:`DirectCalls` takes such a call when, and only when, the SDK would do nothing else with it: the
``tools/call`` handler and the middleware list are still the ones the node installed, no span is being collected,
the tool is an agent tool that is not task-only, the client did not declare the tasks extension, and no cache
hint applies to ``tools/call``. It keeps the SDK as the MCP engine for what the wire sees: the request is checked
by the SDK's own surface validation for the negotiated version (``validate_client_request``) and parsed with the
same params model the handler is registered with, and the result goes through the SDK's per-version result
sieve (``serialize_server_result``) and gets the server's ``serverInfo`` stamp; an exception maps to the same
JSON-RPC error by the caller's ``modern_error_data``. Anything else goes to the kernel as before.
tests/test_mcp_direct.py sends the same requests both ways and compares the answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.shared.exceptions import MCPError
from mcp_types import methods
from pydantic import ValidationError

from .spans import _WhenCollected, collected
from .tasks import McpTasks, declared_tasks

log = logging.getLogger(__name__)

TOOLS_CALL = "tools/call"
Progress = Callable[[float, float | None, str | None], Any]


class DirectCalls:
    """Decides per request whether a ``tools/call`` can skip the SDK kernel, and runs it when it can."""

    def __init__(self, server: Server[Any], tools: Any, tasks: McpTasks | None) -> None:
        """``tools`` is the server's :class:`~.server.AgentTools`; call this after every handler and middleware
        the node installs is in place: what is there now is what a later request must still find."""
        self.server = server
        self.tools = tools
        self.tasks = tasks
        entry = server.get_request_handler(TOOLS_CALL)
        self.handler = entry.handler if entry is not None else None
        self.params_type = entry.params_type if entry is not None else None
        self.middleware = tuple(server.middleware)
        # The SDK computes the stamp once per server too, and deep-copies it per response only so a caller that
        # mutates a response cannot corrupt later ones: this one is encoded at once and never mutated.
        self.stamp = server.server_info_stamp
        known = tuple(m for m in self.middleware
                      if isinstance(m, _WhenCollected) or (tasks is not None and m is tasks.middleware))
        self.chain_known = len(known) == len(self.middleware)

    def takes(self, message: types.JSONRPCRequest) -> bool:
        """Whether the SDK would run ``message`` straight into :meth:`AgentTools.run` (see the module docstring)."""
        params = message.params
        if message.method != TOOLS_CALL or not params or not self.chain_known:
            return False
        name = params.get("name")
        if not isinstance(name, str) or name not in self.tools:
            return False
        entry = self.server.get_request_handler(TOOLS_CALL)
        if entry is None or entry.handler is not self.handler or entry.params_type is not self.params_type:
            return False
        current = self.server.middleware
        if len(current) != len(self.middleware) or any(a is not b for a, b in zip(current, self.middleware,
                                                                                   strict=True)):
            return False
        if TOOLS_CALL in self.server.cache_hints or collected():
            return False
        if self.tasks is not None and (self.tasks.support.get(name) == "required"
                                       or declared_tasks(params.get("_meta"))):
            return False
        return True

    async def call(self, message: types.JSONRPCRequest, version: str, progress: Progress) -> dict[str, Any]:
        """The wire result of the call, as the SDK's kernel would shape it."""
        assert self.params_type is not None
        methods.validate_client_request(TOOLS_CALL, version, message.params)
        params = self.params_type.model_validate(message.params, by_name=False)
        assert isinstance(params, types.CallToolRequestParams)
        result = await self.tools.run(params, progress=progress, meta=params.meta, protocol_version=version)
        dumped: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        result_type = dumped.get("resultType")
        wire = dumped
        if not isinstance(result_type, str) or result_type in types.CORE_RESULT_TYPES:
            try:
                wire = methods.serialize_server_result(TOOLS_CALL, version, dumped)
            except ValidationError:
                log.exception("handler for %r returned an invalid result", TOOLS_CALL)
                raise MCPError(code=types.INTERNAL_ERROR, message="Handler returned an invalid result") from None
        if wire.get("resultType") is None:
            wire["resultType"] = "complete"
        meta = wire.get("_meta")
        if meta is None:
            wire["_meta"] = {types.SERVER_INFO_META_KEY: self.stamp}
        elif isinstance(meta, dict) and meta.get(types.SERVER_INFO_META_KEY) is None:
            wire["_meta"] = {**meta, types.SERVER_INFO_META_KEY: self.stamp}
        return wire
