"""Delegating a task to another organisation's agent: discover, rank, call, verify, receipt, feedback.

``Delegator.delegate(skill, input)``:

1. candidates for the skill come from the node's :class:`~guildnet.node.discovery.PeerIndex` (kept fresh by
   the registry's watch stream; revoked and stale agents are never among them), other organisations only;
2. each gets its reputation lower bound for the skill (from the registry, cached for ``reputation_ttl``),
   its price for the expected tokens, and its recent latency; :func:`~guildnet.node.ranking.rank` orders
   them and says why;
3. the best is called over A2A with the caller's DID and a W3C ``traceparent`` in the message metadata,
   within what is left of the deadline; its output is validated against the skill's output schema, and its
   signed receipt (callee, caller, skill, hashes of this input and this output) is checked;
4. the caller countersigns the receipt with its verdict and submits it to the registry in the background
   (reputation moves only on receipts both sides signed); on failure, timeout or invalid output the next
   candidate is tried, until the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jsonschema import Draft202012Validator
from pydantic import ValidationError

from guildnet.protocols import a2a, jws, receipts
from guildnet.protocols.canonical import content_hash
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import AgentEntry, RegistryClient, RegistryError

from ..a2a.client import A2AClient
from ..a2a.executor import CALLER_KEY, RECEIPT_KEY
from ..flywheel.process_log import CallRecord, Outcome
from ..tracing import child_traceparent, new_traceparent, trace_id
from .discovery import PeerIndex
from .domains import DomainVerifier
from .ranking import Candidate, Decision, Preference, rank

log = logging.getLogger(__name__)


class DelegationFailed(Exception):
    """No candidate completed the task within the deadline; ``attempts`` says what each one did."""

    def __init__(self, message: str, attempts: list[Attempt], decision: Decision | None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.decision = decision


@dataclass(frozen=True, slots=True)
class Attempt:
    agent_id: str
    name: str
    outcome: Literal["success", "failure", "timeout", "invalid-output", "bad-receipt", "error"]
    detail: str
    latency_ms: float


@dataclass(frozen=True, slots=True)
class DelegationResult:
    output: dict[str, Any]
    agent: AgentEntry
    receipt: str
    traceparent: str
    decision: Decision
    attempts: list[Attempt]


@dataclass
class Delegator:
    registry: RegistryClient
    index: PeerIndex
    a2a: A2AClient
    key: SigningKey
    """The calling agent's key: its DID is the caller named in receipts."""
    organisation: str
    """The caller's organisation DID: peers of the same organisation are not candidates."""
    expected_tokens: tuple[int, int] = (500, 500)
    reputation_ttl: float = 30.0
    max_attempts: int = 3
    recorder: Callable[[CallRecord], Awaitable[None]] | None = None
    """Where outbound calls go as process data (the node's process log); None records nothing."""
    refused_receipts: list[str] = field(default_factory=list)
    """Why the registry refused receipts this delegator submitted (see :meth:`flush`)."""
    domains: DomainVerifier | None = None
    """How this node checks candidates' domain proofs itself; needed to require a verified domain."""
    require_verified_domain: bool = False
    """Only organisations whose domain this node proved itself are candidates (docs/domains.md)."""
    _reputation: dict[tuple[str, str], tuple[float, float, float, float]] = field(default_factory=dict)
    _latency: dict[str, float] = field(default_factory=dict)
    _submissions: set[asyncio.Task[None]] = field(default_factory=set)
    _validators: dict[tuple[str, int, str], Draft202012Validator | None] = field(default_factory=dict)

    def price(self, entry: AgentEntry) -> float:
        model = entry.facts.model
        if model is None:
            return 0.0
        tokens_in, tokens_out = self.expected_tokens
        return float(model.cost_per_1k_input * tokens_in / 1000 + model.cost_per_1k_output * tokens_out / 1000)

    async def _reputation_of(self, agent_id: str, skill: str) -> tuple[float, float, float]:
        cached = self._reputation.get((agent_id, skill))
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.reputation_ttl:
            return cached[1], cached[2], cached[3]
        try:
            report = await self.registry.reputation(agent_id, skill)
            value = (report.lower_bound, report.score, report.evidence)
        except (RegistryError, OSError) as exc:  # no reputation yet, or the registry is down: no evidence
            log.debug("no reputation for %s/%s: %s", agent_id, skill, exc)
            value = cached[1:] if cached is not None else (0.0, 0.5, 0.0)
        self._reputation[(agent_id, skill)] = (now, *value)
        return value

    def _candidate(self, e: AgentEntry, reputation: tuple[float, float, float]) -> Candidate:
        lower, score, evidence = reputation
        return Candidate(agent_id=e.id, name=e.facts.name, organisation=e.facts.organisation.name,
                         endpoint=e.facts.endpoints.a2a or "", live=e.live, reputation_lower=lower,
                         reputation_score=score, evidence=evidence, price=self.price(e),
                         recent_latency_ms=self._latency.get(e.id))

    async def _candidates(self, skill: str, require_verified_domain: bool | None
                          ) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
        """The candidates to rank, and those refused for their domain (with why)."""
        await self.index.track(skill)
        entries = self.index.candidates(skill, exclude_org=self.organisation)
        refused: list[tuple[Candidate, str]] = []
        if self.require_verified_domain if require_verified_domain is None else require_verified_domain:
            if self.domains is None:
                raise ValueError("a verified domain is required, but this delegator has no DomainVerifier")
            entries, unproven = await self.domains.split(entries)
            refused = [(self._candidate(e, (0.0, 0.5, 0.0)), why) for e, why in unproven]
        reputations = await asyncio.gather(*(self._reputation_of(e.id, skill) for e in entries))
        return [self._candidate(e, r) for e, r in zip(entries, reputations, strict=True)], refused

    async def candidates(self, skill: str, *, require_verified_domain: bool | None = None) -> list[Candidate]:
        return (await self._candidates(skill, require_verified_domain))[0]

    async def explain(self, skill: str, *, min_reputation: float = 0.5, budget: float | None = None,
                      prefer: Preference = "cost", require_verified_domain: bool | None = None) -> Decision:
        candidates, refused = await self._candidates(skill, require_verified_domain)
        decision = rank(candidates, min_reputation=min_reputation, budget=budget, prefer=prefer)
        decision.excluded.extend(refused)
        return decision

    async def delegate(self, skill: str, arguments: Mapping[str, Any], *, deadline: float = 30.0,
                       budget: float | None = None, min_reputation: float = 0.5, prefer: Preference = "cost",
                       traceparent: str | None = None, require_verified_domain: bool | None = None
                       ) -> DelegationResult:
        """Delegate ``skill``; ``require_verified_domain`` overrides :attr:`require_verified_domain` for this call."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + deadline
        trace = child_traceparent(traceparent) if traceparent else new_traceparent()
        decision = await self.explain(skill, min_reputation=min_reputation, budget=budget, prefer=prefer,
                                      require_verified_domain=require_verified_domain)
        attempts: list[Attempt] = []
        order = decision.order
        for position, candidate in enumerate(order):
            remaining = ends - loop.time()
            if remaining <= 0:
                break
            entry = self.index.get(candidate.agent_id)
            if entry is None or self.index.is_revoked(candidate.agent_id):
                continue  # revoked or gone since ranking
            # a fair share of what is left, so a stuck peer cannot eat the time of the ones after it
            share = remaining / min(len(order) - position, self.max_attempts - len(attempts))
            attempt, result = await self._try(entry, skill, dict(arguments), trace, share)
            attempts.append(attempt)
            await self._record(entry, skill, arguments, result[0] if result else None, attempt, trace,
                               candidate.price)
            if result is not None:
                output, receipt = result
                return DelegationResult(output, entry, receipt, trace, decision, attempts)
            if len(attempts) >= self.max_attempts:
                break
        raise DelegationFailed(f"no candidate for skill {skill!r} completed the task "
                               f"({len(attempts)} tried, {len(decision.order)} ranked)", attempts, decision)

    async def _try(self, entry: AgentEntry, skill: str, arguments: dict[str, Any], trace: str,
                   within: float) -> tuple[Attempt, tuple[dict[str, Any], str] | None]:
        started = time.perf_counter()

        def attempt(outcome: Any, detail: str) -> Attempt:
            latency = (time.perf_counter() - started) * 1000
            if outcome in ("success", "failure"):
                self._latency[entry.id] = latency
            return Attempt(entry.id, entry.facts.name, outcome, detail, latency)

        message = a2a.skill_request(arguments, skill)
        message["metadata"] = {CALLER_KEY: self.key.did, "traceparent": trace, "skill": skill}
        try:
            async with asyncio.timeout(within):
                result = await self.a2a.send_message(entry.facts.endpoints.a2a or "", message)
            task = result.get("task")
            if task is None:
                return attempt("error", "the peer answered with a message, not a task"), None
        except TimeoutError:
            return attempt("timeout", f"no answer within {within:.1f} s"), None
        except Exception as exc:
            return attempt("error", f"{type(exc).__name__}: {exc}"), None
        state = task.get("status", {}).get("state")
        output = a2a.artifact_output(task)
        token = (task.get("metadata") or {}).get(RECEIPT_KEY)
        problem = self._check_receipt(token, entry, skill, arguments, output, task)
        if problem is not None:
            return attempt("bad-receipt", problem), None
        assert isinstance(token, str)
        if state != "TASK_STATE_COMPLETED" or output is None:
            self._submit(token, "failure", f"task ended {state}")
            return attempt("failure", f"task ended {state}"), None
        validator = self._output_validator(entry, skill)
        schema_errors = list(validator.iter_errors(output)) if validator is not None else []
        if schema_errors:
            self._submit(token, "failure", "output does not match the skill's output schema")
            return attempt("invalid-output", schema_errors[0].message), None
        receipt = self._submit(token, "success", None)
        return attempt("success", "completed"), (output, receipt)

    async def _record(self, entry: AgentEntry, skill: str, arguments: Mapping[str, Any],
                      output: dict[str, Any] | None, attempt: Attempt, trace: str, price: float) -> None:
        if self.recorder is None:
            return
        outcome: Outcome = ("ok" if attempt.outcome == "success"
                            else "rejected" if attempt.outcome in ("failure", "invalid-output", "bad-receipt")
                            else "error")
        try:
            await self.recorder(CallRecord(
                direction="out", transport="delegation", skill=skill, agent=entry.facts.name, outcome=outcome,
                model=entry.facts.model.family if entry.facts.model else None, input=dict(arguments),
                output=output, cost=price if outcome == "ok" else 0.0, latency_ms=attempt.latency_ms,
                error=None if outcome == "ok" else f"{attempt.outcome}: {attempt.detail}", trace_id=trace_id(trace)))
        except Exception:
            log.exception("could not record a delegation to %s", entry.id)

    def _check_receipt(self, token: Any, entry: AgentEntry, skill: str, arguments: dict[str, Any],
                       output: dict[str, Any] | None, task: dict[str, Any]) -> str | None:
        """Is this the called agent's signed statement about exactly this task, input and output?"""
        if not isinstance(token, str):
            return "the peer returned no signed receipt"
        try:
            verified, body = jws.verify_json(token)
            claim = receipts.TaskClaim.model_validate(body)
        except (jws.MalformedJWS, jws.BadSignature, ValidationError) as exc:
            return f"receipt does not verify: {exc}"
        if verified.signer != claim.callee or claim.callee not in (entry.id, entry.current_key):
            return "receipt is not signed by the agent that was called"
        if claim.caller != self.key.did:
            return "receipt names another caller"
        if claim.skill != skill or claim.task_id != task.get("id"):
            return "receipt names another task or skill"
        if claim.input_sha256 != content_hash(arguments):
            return "receipt hashes another input"
        if claim.status == "completed" and claim.output_sha256 != content_hash(output):
            return "receipt hashes another output"
        return None

    def _output_validator(self, entry: AgentEntry, skill: str) -> Draft202012Validator | None:
        key = (entry.id, entry.version, skill)
        if key not in self._validators:
            facts = entry.facts.skill(skill)
            self._validators[key] = Draft202012Validator(facts.output_schema) if facts else None
        return self._validators[key]

    def _submit(self, token: str, verdict: Literal["success", "failure"], reason: str | None) -> str:
        """Countersign now; submit in the background so feedback never delays the caller."""
        receipt: str = receipts.caller_countersign(token, self.key, verdict, reason=reason)

        async def submit() -> None:
            try:
                await self.registry.submit_receipt(receipt, self.key)
            except (RegistryError, OSError) as exc:
                log.warning("receipt not accepted by the registry: %s", exc)
                self.refused_receipts.append(str(exc))

        task = asyncio.create_task(submit())
        self._submissions.add(task)
        task.add_done_callback(self._submissions.discard)
        return receipt

    async def flush(self) -> None:
        """Wait for receipts still being submitted (before shutting down, or to read fresh reputation)."""
        if self._submissions:
            await asyncio.gather(*list(self._submissions), return_exceptions=True)
