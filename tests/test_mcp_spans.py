"""The SDK's span per MCP request: skipped while no tracer provider records spans, opened as soon as one does."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from mcp.server import Server

from guildnet.node.mcp.spans import _WhenCollected, only_when_collected

# A process of its own: OpenTelemetry's global provider can be set once per process.
SCRIPT = textwrap.dedent('''
    import asyncio, contextlib, json
    import aiohttp
    from aiohttp import web
    from opentelemetry import trace
    from pydantic import BaseModel
    from guildnet.node.agent import FunctionAgent
    from guildnet.node.mcp.server import setup_mcp
    from guildnet.node.mcp.spans import collected

    class TextIn(BaseModel):
        text: str

    started = []

    class Recording(trace.Tracer):
        def start_span(self, name, context=None, kind=trace.SpanKind.INTERNAL, attributes=None, **_):
            started.append({"name": name, "attributes": dict(attributes or {})})
            return trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)

        @contextlib.contextmanager
        def start_as_current_span(self, name, context=None, kind=trace.SpanKind.INTERNAL, attributes=None, **kw):
            with trace.use_span(self.start_span(name, context, kind, attributes)) as span:
                yield span

    class Provider(trace.TracerProvider):
        def get_tracer(self, *args, **kwargs):
            return Recording()

    async def call(url, http):
        meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "a"}, "_meta": meta}}
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28",
                   "Mcp-Method": "tools/call", "Mcp-Name": "echo"}
        async with http.post(url, json=body, headers=headers) as response:
            return (await response.json())["result"]["structuredContent"]

    async def main():
        agent = FunctionAgent("echo")

        async def echo(data: TextIn) -> TextIn:
            return data

        agent.add_skill(echo, id="echo")
        app = web.Application()
        setup_mcp(app, [agent])
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/mcp"
        report = {}
        async with aiohttp.ClientSession() as http:
            report["before"] = {"collected": collected(), "answer": await call(url, http), "spans": list(started)}
            trace.set_tracer_provider(Provider())
            report["after"] = {"collected": collected(), "answer": await call(url, http), "spans": list(started)}
        await runner.cleanup()
        print(json.dumps(report))

    asyncio.run(main())
''')


def test_spans_are_opened_exactly_when_a_provider_records_them() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["before"] == {"collected": False, "answer": {"text": "a"}, "spans": []}
    after = report["after"]
    assert after["collected"] is True and after["answer"] == {"text": "a"}
    assert [span["name"] for span in after["spans"]] == ["tools/call echo"]
    assert after["spans"][0]["attributes"]["gen_ai.tool.name"] == "echo"


def test_wrapping_is_idempotent_and_keeps_the_order() -> None:
    server: Server[object] = Server("probe")
    extra = object()
    server.middleware.append(extra)  # type: ignore[arg-type]
    only_when_collected(server)
    only_when_collected(server)
    assert [type(entry) for entry in server.middleware] == [_WhenCollected, object]
    assert server.middleware[1] is extra
