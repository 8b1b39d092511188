"""``serve_stdio`` driven by the official ``mcp`` client through a real subprocess."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mcp import Client, MCPError, StdioServerParameters

ENTRY = Path(__file__).with_name("mcp_stdio_entry.py")


@pytest.mark.parametrize(("mode", "revision"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_stdio_lists_calls_and_reports_errors(mode: str, revision: str) -> None:
    params = StdioServerParameters(command=sys.executable, args=[str(ENTRY)])
    async with Client(params, mode=mode) as client:
        assert client.protocol_version == revision
        assert client.server_info is not None and client.server_info.name == "echo-node"
        tools = (await client.list_tools()).tools
        assert [tool.name for tool in tools] == ["echo"]
        assert tools[0].input_schema["required"] == ["text"]
        assert tools[0].output_schema is not None

        result = await client.call_tool("echo", {"text": "over stdio"})
        assert not result.is_error
        assert result.structured_content == {"text": "over stdio"}
        assert json.loads(result.content[0].text) == {"text": "over stdio"}  # type: ignore[union-attr]

        failed = await client.call_tool("echo", {"text": "fail"})
        assert failed.is_error and failed.content[0].text == "asked to fail"  # type: ignore[union-attr]

        with pytest.raises(MCPError) as unknown:
            await client.call_tool("missing", {})
        assert unknown.value.error.code == -32602
