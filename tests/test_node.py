"""A node as a user runs it: `guildnet node run CONFIG` publishes its agents and serves them over MCP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from process_support import process_rows
from registry_support import cli_process, free_port, registry_process

from guildnet.node.a2a.client import A2AClient
from guildnet.registry.client import RegistryClient

ECHO_AGENT = Path(__file__).resolve().parent.parent / "examples" / "echo" / "agent.py"


def write_config(tmp_path: Path, port: int, registry: str | None) -> Path:
    config = tmp_path / "node.toml"
    config.write_text(f"""
[node]
org_name = "echo-org"
org_key = "keys/org.key"
port = {port}
db = "sqlite:///node.db"
{f'registry = "{registry}"' if registry else ""}

[[agents]]
agent = "{ECHO_AGENT}:agent"
key = "keys/echo.key"
ttl_seconds = 30
""")
    return config


@contextlib.asynccontextmanager
async def node_process(config: Path, port: int) -> AsyncIterator[str]:
    # ready, not only alive: with a registry configured, /readyz waits until every agent is registered there
    async with cli_process("node", "run", str(config), url=f"http://127.0.0.1:{port}", ready="/readyz") as url:
        yield url


async def test_node_publishes_and_serves_mcp_then_retires(tmp_path: Path) -> None:
    port = free_port()
    async with registry_process(f"sqlite:///{tmp_path}/registry.db") as registry_url:
        config = write_config(tmp_path, port, registry_url)
        async with node_process(config, port) as node_url, RegistryClient(registry_url) as registry:
            async with asyncio.timeout(10):
                async for change in registry.watch(0):  # the node registers its agent at start-up
                    if change["kind"] == "registered":
                        break
            entry = (await registry.search(skill="echo")).agents[0]
            assert entry.live and entry.facts.name == "echo" and entry.facts.organisation.name == "echo-org"
            assert entry.facts.endpoints.mcp == f"{node_url}/mcp"
            assert entry.facts.endpoints.a2a == f"{node_url}/agents/echo/a2a"
            assert entry.facts.skill("echo") is not None

            # the A2A endpoint in the AgentFacts serves a card signed by the very key the registry knows
            async with A2AClient() as a2a_client:
                card = await a2a_client.resolve_card(f"{node_url}/agents/echo/.well-known/agent-card.json",
                                                     expected_did=entry.id)
                assert [s["id"] for s in card["skills"]] == ["echo"]
                task, output = await a2a_client.call_skill(entry.facts.endpoints.a2a or "", "echo", {"text": "a2a"})
                assert output == {"text": "a2a"} and task["status"]["state"] == "TASK_STATE_COMPLETED"
            for mode in ("auto", "legacy"):
                async with Client(f"{node_url}/mcp", mode=mode) as client:
                    tools = (await client.list_tools()).tools
                    assert [t.name for t in tools] == ["echo"]
                    assert tools[0].input_schema["required"] == ["text"]
                    result = await client.call_tool("echo", {"text": "héllo"})
                    assert result.structured_content == {"text": "héllo"} and not result.is_error
        retired = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "guildnet.cli", "node", "retire", str(config)],
            capture_output=True, text=True, timeout=60)
        assert retired.returncode == 0, retired.stderr
        assert entry.id in retired.stdout
        async with RegistryClient(registry_url) as registry:
            assert (await registry.get(entry.id)).revoked
            assert (await registry.search(skill="echo")).agents == []


async def test_node_without_registry_still_serves(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, None)
    async with node_process(config, port) as node_url, Client(f"{node_url}/mcp") as client:
        assert (await client.call_tool("echo", {"text": "x"})).structured_content == {"text": "x"}
        bad = await client.call_tool("echo", {"txt": "x"})
        assert bad.is_error and "text" in str(bad.content[0])


async def test_mcp_stdio_command(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port(), None)
    server = StdioServerParameters(command=sys.executable, args=["-m", "guildnet.cli", "node", "mcp-stdio",
                                                                 str(config)])
    async with Client(server) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["echo"]
        assert (await client.call_tool("echo", {"text": "stdio"})).structured_content == {"text": "stdio"}


async def test_inbound_calls_are_recorded_without_pii(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, None)
    async with node_process(config, port) as node_url, Client(f"{node_url}/mcp") as client:
        await client.call_tool("echo", {"text": "mail jane.doe@example.com or call +44 20 7946 0958. Regards, "
                                                "Maria Garcia"})
        await client.call_tool("echo", {"txt": "wrong argument"})
        await process_rows(tmp_path / "node.db", "id", count=2, where="direction = 'in'")
    report = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "guildnet.cli", "flywheel", "report", "--config", str(config),
                         "--json"], capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    body = json.loads(report.stdout)
    echo = next(row for row in body["by_skill"] if row["name"] == "echo")
    assert echo["volume"] == 2 and echo["completion_rate"] == 0.5
    raw = await asyncio.to_thread(lambda: b"".join(p.read_bytes() for p in tmp_path.glob("node.db*")))
    assert b"jane.doe@example.com" not in raw and b"7946" not in raw
    assert b"Garcia" not in raw  # the default config finds names when spaCy is installed, as in the test install
    assert b"echo" in raw  # the calls themselves are there


async def test_delegate_command(tmp_path: Path) -> None:
    from delegation_support import running_node, translator, wait_for_registrations

    port = free_port()
    async with registry_process(f"sqlite:///{tmp_path}/registry.db") as registry_url:
        config = write_config(tmp_path, port, registry_url)
        async with node_process(config, port), \
                running_node("org-b", translator("b-translator"), registry_url,
                             f"sqlite+aiosqlite:///{tmp_path}/b.db") as b, RegistryClient(registry_url) as registry:
            await wait_for_registrations(registry, 2)

            def run(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run([sys.executable, "-m", "guildnet.cli", "delegate", *args, "--config",
                                       str(config)], capture_output=True, text=True, timeout=60)

            explained = await asyncio.to_thread(run, "translate", "--input", '{"text": "hi"}', "--explain")
            assert explained.returncode == 0, explained.stderr
            assert "b-translator" in explained.stdout and "rep lower" in explained.stdout
            done = await asyncio.to_thread(run, "translate", "--input", '{"text": "hi"}', "--json")
            assert done.returncode == 0, done.stderr
            body = json.loads(done.stdout)
            assert body["output"] == {"text": "HI"} and body["agent"] == b.agent_key.did
            assert body["traceparent"].startswith("00-")
            head = await registry.log_head()
            kinds = [entry["kind"] for entry in await registry.log_entries(0, head.size)]
            assert kinds.count("receipt") == 1  # countersigned by the CLI and accepted before it exited
            recorded = await asyncio.to_thread(subprocess.run, [
                sys.executable, "-m", "guildnet.cli", "flywheel", "report", "--config", str(config), "--json"],
                capture_output=True, text=True, timeout=60)
            assert recorded.returncode == 0, recorded.stderr
            outbound = [row for row in json.loads(recorded.stdout)["by_skill"] if row["name"] == "translate"]
            assert len(outbound) == 1 and outbound[0]["volume"] == 1  # the CLI's delegation is process data too
            missing = await asyncio.to_thread(run, "no-such-skill", "--input", "{}")
            assert missing.returncode == 1 and "offers skill 'no-such-skill'" in missing.stderr
            bad = await asyncio.to_thread(run, "translate", "--input", "not json")
            assert bad.returncode == 2 and "not JSON" in bad.stderr


def test_an_agent_file_may_import_its_neighbours(tmp_path: Path) -> None:
    from guildnet.node.config import load_agent

    (tmp_path / "shared_words.py").write_text("GREETING = 'hello'\n")
    (tmp_path / "greeter.py").write_text(
        "from shared_words import GREETING\nfrom guildnet.node.agent import FunctionAgent\n"
        "agent = FunctionAgent(GREETING)\n")
    assert load_agent("greeter.py:agent", tmp_path).name == "hello"


def test_a_misspelt_config_key_is_an_error_not_ignored(tmp_path: Path) -> None:
    from guildnet.node.config import ConfigError, load_config

    config = write_config(tmp_path, free_port(), None)
    config.write_text(config.read_text().replace('org_name = "echo-org"', 'org_name = "echo-org"\nregisty = "x"'))
    with pytest.raises(ConfigError, match=r"unknown key 'registy'"):
        load_config(config)
