"""/metrics of a live registry and two live nodes after real traffic, parsed as Prometheus text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from delegation_support import running_node, translator, wait_for_registrations
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families
from registry_support import live_registry

from guildnet.node.a2a.client import A2AClient
from guildnet.node.slm import ModelSkill, ScriptedBackend, SLMAgent
from guildnet.protocols.agentfacts import Skill
from guildnet.registry.client import RegistryClient
from guildnet.registry.server import HUB, LOG

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the series of ``name`` whose labels include ``labels`` (0 when there is none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


async def test_metrics_count_real_traffic_on_registry_and_nodes(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
    skill = Skill(id="translate", name="Translate", input_schema=schema, output_schema=schema)
    # org A's small model never produces JSON: every call escalates past it to org B's translator,
    # which fails every second call
    slm = SLMAgent("slm-translator", [ModelSkill(skill, "Translate.")],
                   ScriptedBackend(["not JSON", "not JSON either"], model="tiny-slm"))
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as registry, \
            RegistryClient(registry.url) as client, A2AClient() as a2a:
        async with running_node("org-b", translator("b-translator", fail_every=2), registry.url,
                                f"sqlite+aiosqlite:///{tmp_path}/b.db") as b, \
                running_node("org-a", slm, registry.url, f"sqlite+aiosqlite:///{tmp_path}/a.db") as a:
            await wait_for_registrations(client, 2)
            endpoint = f"{a.node.base_url}/agents/slm-translator/a2a"
            first, output = await a2a.call_skill(endpoint, "translate", {"text": "bonjour"})
            assert output == {"text": "BONJOUR"} and first["status"]["state"] == "TASK_STATE_COMPLETED"
            second, _ = await a2a.call_skill(endpoint, "translate", {"text": "encore"})
            assert second["status"]["state"] == "TASK_STATE_FAILED"
            await (await a.node.delegator()).flush()  # both receipts reach the registry
            async with Client(f"{b.node.base_url}/mcp") as mcp:
                assert not (await mcp.call_tool("translate", {"text": "mcp"})).is_error
            async with aiohttp.ClientSession() as http:
                async with http.post(registry.url + "/v1/agents", data="not a JWS") as refused:
                    assert refused.status == 415
                async with http.get(registry.url + "/v1/agents/did:key:z6MkNope") as missing:
                    assert missing.status == 404
                before = await scrape(registry.url)
                async with http.ws_connect(registry.url + "/v1/watch?since=0"):
                    async with asyncio.timeout(5):  # until the hub has subscribed the new stream
                        while True:
                            if registry.app[HUB].watcher_count > value(before, "guildnet_registry_watch_connections"):
                                break
                            await asyncio.sleep(0.02)
                    reg = await scrape(registry.url)
            node_a, node_b = await scrape(a.node.base_url), await scrape(b.node.base_url)
            await a.node.close()  # its peer index watches the registry: close it before the registry stops

        assert value(reg, "guildnet_registry_watch_connections") == value(
            before, "guildnet_registry_watch_connections") + 1
        assert value(reg, "guildnet_registry_log_size") == await registry.app[LOG].size() == 4  # 2 agents, 2 receipts
        assert value(reg, "guildnet_registry_writes_total", action="register", outcome="accepted") == 2
        assert value(reg, "guildnet_registry_writes_total", action="receipt", outcome="accepted") == 2
        assert value(reg, "guildnet_registry_writes_total", action="register", outcome="refused") == 1
        assert value(reg, "guildnet_registry_writes_total", action="heartbeat", outcome="accepted") >= 2
        assert value(reg, "guildnet_registry_refusals_total", status="415") == 1
        assert value(reg, "guildnet_registry_refusals_total", status="404") == 1
        by_template = {"route": "/v1/agents/{agent_id}", "method": "GET", "status": "404"}
        assert value(reg, "guildnet_http_requests_total", **by_template) == 1
        assert value(reg, "guildnet_http_request_duration_seconds_count", **by_template) == 1
        assert not any("did:key" in dict(labels).get("route", "") for _, labels in reg)  # templates, not paths

        assert value(node_a, "guildnet_node_slm_escalations_total", reason="invalid_output") == 2
        assert value(node_a, "guildnet_node_delegations_total", outcome="success") == 1
        assert value(node_a, "guildnet_node_delegations_total", outcome="failed") == 1
        assert value(node_a, "guildnet_node_delegation_attempts_total", outcome="success") == 1
        assert value(node_a, "guildnet_node_delegation_attempts_total", outcome="failure") == 1
        assert value(node_a, "guildnet_node_a2a_tasks_total", agent="slm-translator", state="completed") == 1
        assert value(node_a, "guildnet_node_a2a_tasks_total", agent="slm-translator", state="failed") == 1
        assert value(node_a, "guildnet_http_requests_total", route="/agents/{name}/a2a", method="POST",
                     status="200") == 2
        assert value(node_b, "guildnet_node_a2a_tasks_total", agent="b-translator", state="completed") == 1
        assert value(node_b, "guildnet_node_a2a_tasks_total", agent="b-translator", state="failed") == 1
        assert value(node_b, "guildnet_node_mcp_tool_calls_total", agent="b-translator", skill="translate",
                     outcome="ok") == 1
        assert value(node_b, "guildnet_node_delegations_total") == 0


@pytest.mark.parametrize("kind", ["registry", "node"])
async def test_readyz_says_why_it_is_not_ready(kind: str, tmp_path: Path) -> None:
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as registry, aiohttp.ClientSession() as http:
        if kind == "registry":
            url = registry.url
            async with http.get(url + "/readyz") as response:
                assert response.status == 200 and (await response.json())["status"] == "ready"
            await registry.store.engine.dispose()
            (tmp_path / "r.db").unlink()
            (tmp_path / "r.db").mkdir()  # the database file is now a directory: no connection can open it
            async with http.get(url + "/readyz") as response:
                body = await response.json()
                assert response.status == 503 and body["reason"].startswith("database unreachable"), body
            return
        # a node whose registry does not answer is alive but not ready: its agent is not discoverable
        async with running_node("org-a", translator("a"), "http://127.0.0.1:9",
                                f"sqlite+aiosqlite:///{tmp_path}/a.db") as node:
            async with http.get(node.node.base_url + "/healthz") as response:
                assert response.status == 200
            async with http.get(node.node.base_url + "/readyz") as response:
                body = await response.json()
                assert response.status == 503 and body["reason"] == "not yet registered in http://127.0.0.1:9: a"
        async with running_node("org-a", translator("a"), registry.url,
                                f"sqlite+aiosqlite:///{tmp_path}/a2.db") as node, RegistryClient(registry.url) as rc:
            await wait_for_registrations(rc, 1)
            async with asyncio.timeout(5):
                while True:
                    async with http.get(node.node.base_url + "/readyz") as response:
                        if response.status == 200:
                            break
                    await asyncio.sleep(0.05)
