"""An echo agent served over MCP stdio; the subprocess that tests/test_mcp_stdio.py talks to."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from guildnet.node.agent import FunctionAgent, SkillError
from guildnet.node.mcp.server import serve_stdio


class EchoIn(BaseModel):
    text: str


class EchoOut(BaseModel):
    text: str


async def echo(data: EchoIn) -> EchoOut:
    if data.text == "fail":
        raise SkillError("asked to fail")
    return EchoOut(text=data.text)


agent = FunctionAgent("echo", description="Echoes text")
agent.add_skill(echo, id="echo", description="Returns its text unchanged")


if __name__ == "__main__":
    asyncio.run(serve_stdio([agent], name="echo-node", version="1.0"))
