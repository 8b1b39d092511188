"""SLMAgent: skills answered by a small model first, escalated when its answer cannot be trusted.

The chain is: the primary (small) backend, then any larger backends, then optionally a peer found
through the registry (``peer_fallback``, which the node connects to delegation). Each tier's answer is
accepted only if it passes the tier's :class:`ConfidencePolicy`:

1. contract: the output parses as JSON and matches the skill's output schema (always checked; free);
2. mean token log-probability at or above ``min_mean_logprob`` (when set and the server returns
   log-probs; a server without them is not penalised);
3. agreement of ``samples`` answers at or above ``min_agreement`` (when ``samples > 1``).

The last tier has nothing to escalate to, so only the contract applies there. Every model call and
the peer call produce a :class:`~guildnet.node.process_log.CallRecord`; a rejected answer carries
``escalated=True`` and the reason, which is the raw material for per-cluster thresholds later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from guildnet.protocols.agentfacts import Skill

from ..agent import Agent, InvalidOutput, SkillError, TaskContext
from ..flywheel.process_log import CallRecord, Outcome
from ..tracing import trace_id
from .backends import BackendError, ChatBackend, ChatRequest, ChatResult

log = logging.getLogger(__name__)

PeerFallback = Callable[[str, dict[str, Any], str | None], Awaitable[dict[str, Any]]]
"""``(skill, arguments, traceparent)`` -> the peer's output: the call's trace continues at the peer."""
Recorder = Callable[[CallRecord], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ConfidencePolicy:
    min_mean_logprob: float | None = None
    samples: int = 1
    min_agreement: float = 1.0
    sample_temperature: float = 0.7

    def __post_init__(self) -> None:
        if self.samples < 1 or not 0.0 < self.min_agreement <= 1.0:
            raise ValueError("samples must be >= 1 and min_agreement in (0, 1]")


@dataclass(frozen=True, slots=True)
class Tier:
    backend: ChatBackend
    policy: ConfidencePolicy = field(default_factory=ConfidencePolicy)


@dataclass(frozen=True, slots=True)
class ModelSkill:
    """A skill and how to ask a model for it. ``render`` turns arguments into the user message
    (default: the arguments as JSON)."""

    skill: Skill
    system_prompt: str
    max_tokens: int = 256
    temperature: float = 0.0
    render: Callable[[dict[str, Any]], str] | None = None


@dataclass(slots=True)
class _Sample:
    result: ChatResult | None
    error: BackendError | None
    output: dict[str, Any] | None = None
    problem: str | None = None


@dataclass(slots=True)
class _Verdict:
    output: dict[str, Any] | None
    reason: str | None  # None: accepted


SCHEMA_INSTRUCTION = "\nAnswer with one JSON object matching this JSON Schema: "
"""What ends every system prompt, followed by the output schema: the flywheel reads the schema back from there."""


def trace_id_of(ctx: TaskContext) -> str:
    """The W3C trace id of the call if it came with a ``traceparent``, else the task id."""
    return trace_id(ctx.traceparent) or ctx.task_id


def _strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text.strip()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class SLMAgent(Agent):
    """Model-backed skills with confidence-based escalation; see the module docstring."""

    def __init__(self, name: str, skills: Sequence[ModelSkill], primary: ChatBackend | Tier, *,
                 escalation: Sequence[ChatBackend | Tier] = (), peer_fallback: PeerFallback | None = None,
                 recorder: Recorder | None = None, description: str = "") -> None:
        tiers = [t if isinstance(t, Tier) else Tier(t) for t in (primary, *escalation)]
        super().__init__(name, description=description, model=tiers[0].backend.model_facts())
        self.tiers = tiers
        self.peer_fallback = peer_fallback
        self.recorder = recorder
        self._specs = {spec.skill.id: spec for spec in skills}
        if len(self._specs) != len(skills):
            raise ValueError("skill ids must be unique")

    def replace_primary(self, tier: Tier) -> Tier:
        """Answer with ``tier`` first from the next task on and return the tier it replaces (tasks already under
        way finish with it); the agent's AgentFacts ``model`` block follows."""
        old, self.tiers[0] = self.tiers[0], tier
        self.model = tier.backend.model_facts()
        return old

    @property
    def skills(self) -> Sequence[Skill]:
        return [spec.skill for spec in self._specs.values()]

    async def _record(self, record: CallRecord) -> None:
        if self.recorder is None:
            return
        try:
            await self.recorder(record)
        except Exception:  # losing a process-data row must not fail the task it describes
            log.exception("could not record a %s call of %s", record.transport, record.skill)

    def _messages(self, spec: ModelSkill, arguments: dict[str, Any]) -> list[dict[str, str]]:
        render = spec.render or (lambda args: json.dumps(args, ensure_ascii=False, sort_keys=True))
        system = f"{spec.system_prompt}{SCHEMA_INSTRUCTION}{_canonical(spec.skill.output_schema)}"
        return [{"role": "system", "content": system}, {"role": "user", "content": render(arguments)}]

    def _judge_sample(self, skill_id: str, sample: _Sample) -> None:
        result = sample.result
        if result is None:
            return
        if result.finish_reason == "length":
            sample.problem = "truncated (finish_reason=length)"
            return
        try:
            value = json.loads(_strip_fences(result.content or ""))
        except ValueError:
            sample.problem = "output is not JSON"
            return
        try:
            if not isinstance(value, dict):
                raise InvalidOutput("output is not a JSON object")
            self.check_output(skill_id, value)
        except InvalidOutput as exc:
            sample.problem = str(exc)
            return
        sample.output = value

    @staticmethod
    def _verdict(samples: list[_Sample], policy: ConfidencePolicy, last: bool) -> _Verdict:
        valid = [s for s in samples if s.output is not None]
        if not valid:
            errors = [s.error for s in samples if s.error is not None]
            if errors:
                return _Verdict(None, f"{errors[0].kind}: {errors[0]}")
            return _Verdict(None, f"invalid output: {samples[0].problem}")
        counts = Counter(_canonical(s.output) for s in valid)
        modal, votes = counts.most_common(1)[0]
        chosen = next(s for s in valid if _canonical(s.output) == modal)
        if last:
            return _Verdict(chosen.output, None)
        agreement = votes / len(samples)
        if len(samples) > 1 and agreement < policy.min_agreement:
            return _Verdict(chosen.output, f"disagreement: {agreement:.2f} < {policy.min_agreement:.2f}")
        if policy.min_mean_logprob is not None:
            means = [m for s in valid if _canonical(s.output) == modal
                     and s.result is not None and (m := s.result.mean_logprob) is not None]
            if means:
                mean = sum(means) / len(means)
                if mean < policy.min_mean_logprob:
                    return _Verdict(chosen.output, f"low logprob: mean {mean:.3f} < {policy.min_mean_logprob:.3f}")
        return _Verdict(chosen.output, None)

    async def _call(self, backend: ChatBackend, request: ChatRequest) -> _Sample:
        try:
            return _Sample(await backend.chat(request), None)
        except BackendError as exc:
            return _Sample(None, exc)

    async def _attempt(self, tier: Tier, spec: ModelSkill, messages: list[dict[str, str]], last: bool,
                       trace: str, arguments: dict[str, Any]) -> _Verdict:
        policy = tier.policy
        request = ChatRequest(
            messages=messages, schema=spec.skill.output_schema, schema_name=spec.skill.id.replace(".", "_"),
            max_tokens=spec.max_tokens,
            temperature=spec.temperature if policy.samples == 1 else policy.sample_temperature,
            logprobs=policy.min_mean_logprob is not None,
        )
        samples = list(await asyncio.gather(*(self._call(tier.backend, request) for _ in range(policy.samples))))
        for sample in samples:
            self._judge_sample(spec.skill.id, sample)
        verdict = self._verdict(samples, policy, last)
        accepted = verdict.reason is None
        for sample in samples:
            result = sample.result
            outcome: Outcome
            if sample.error is not None:
                outcome = "error"
            elif accepted and sample.output is not None and _canonical(sample.output) == _canonical(verdict.output):
                outcome = "ok"
            else:
                outcome = "rejected"
            await self._record(CallRecord(
                direction="model", transport="model", skill=spec.skill.id, agent=self.name,
                model=result.model if result else tier.backend.model, outcome=outcome,
                input={"arguments": arguments, "messages": messages},
                output=sample.output if sample.output is not None else (
                    {"raw": result.content} if result is not None else None),
                tool_calls=(result.tool_calls or None) if result else None,
                tokens_in=result.tokens_in if result else 0, tokens_out=result.tokens_out if result else 0,
                cost=result.cost if result else 0.0,
                latency_ms=result.latency_ms if result else (sample.error.latency_ms if sample.error else 0.0),
                escalated=not accepted, escalation_reason=verdict.reason,
                error=str(sample.error) if sample.error else sample.problem, trace_id=trace,
            ))
        return verdict

    async def _ask_peer(self, peer: PeerFallback, skill_id: str, arguments: dict[str, Any],
                        ctx: TaskContext) -> dict[str, Any] | None:
        start = time.perf_counter()
        output: dict[str, Any] | None = None
        problem: str | None = None
        try:
            output = await peer(skill_id, arguments, ctx.traceparent)
            self.check_output(skill_id, output)
        except Exception as exc:  # any peer failure ends the chain the same way: recorded, then reported
            problem = f"{type(exc).__name__}: {exc}"
        await self._record(CallRecord(
            direction="out", transport="delegation", skill=skill_id, agent=self.name,
            outcome="error" if problem else "ok", input={"arguments": arguments}, output=output,
            latency_ms=(time.perf_counter() - start) * 1000.0, error=problem, trace_id=trace_id_of(ctx),
        ))
        return None if problem else output

    async def run(self, skill_id: str, arguments: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        spec = self._specs[skill_id]
        trace = trace_id_of(ctx)
        messages = self._messages(spec, arguments)
        reasons: list[str] = []
        for index, tier in enumerate(self.tiers):
            last = index == len(self.tiers) - 1 and self.peer_fallback is None
            verdict = await self._attempt(tier, spec, messages, last, trace, arguments)
            if verdict.reason is None and verdict.output is not None:
                ctx.annotations["slm"] = {"model": tier.backend.model, "tier": index, "escalations": reasons}
                return verdict.output
            reasons.append(f"{tier.backend.model}: {verdict.reason}")
        if self.peer_fallback is not None:
            output = await self._ask_peer(self.peer_fallback, skill_id, arguments, ctx)
            if output is not None:
                ctx.annotations["slm"] = {"model": None, "tier": "peer", "escalations": reasons}
                return output
            reasons.append("peer: delegation failed")
        raise SkillError(f"no acceptable answer for {skill_id!r}: " + "; ".join(reasons))
