"""Delegating a task to another organisation's agent: discover, rank, call, verify, receipt, feedback.

``Delegator.delegate(skill, input)``:

1. candidates for the skill come from the node's :class:`~guildnet.node.discovery.PeerIndex` (kept fresh by
   the registry's watch stream; revoked and stale agents are never among them), other organisations only, at
   most ``max_per_org`` per organisation and ``max_candidates`` in all (the longest registered first), so a
   flood of registrations cannot make ranking slow;
2. each gets its reputation lower bound for the skill (from the registry, all in one batched request, cached
   for ``reputation_ttl``), its price for the expected tokens, its recent latency and its age;
   :func:`~guildnet.node.ranking.rank` orders them and says why;
3. the best is called over A2A (the call signed by the calling agent, a W3C ``traceparent`` in the message
   metadata) within a fair share of what is left of the deadline, on the binding of its verified card measured
   fastest (:mod:`~guildnet.node.delegation.cards`); a long task (a deadline over :attr:`Delegator.push_after`)
   is pushed back to this node's webhook instead of holding a connection
   (:mod:`~guildnet.node.delegation.push_wait`); its output is checked against the schema *this node* pinned
   for the skill (:mod:`~guildnet.node.delegation.schemas`), and its signed receipt
   (callee, caller, skill, hashes of this input and this output) is checked;
4. the caller countersigns the receipt with its verdict and submits it to the registry in the background
   (reputation moves only on receipts both sides signed); on any failure of an attempt (timeout, refusal,
   invalid output, a malformed or oversized reply) the next candidate of another organisation is tried, until
   the deadline, which holds for the whole delegation, ranking included.

The input is checked against each candidate's published input schema before it is called (input nobody
accepts fails at once, ``reason`` ``invalid-input``, calling nobody). Each call carries a context id the caller
chose, so a call abandoned at the deadline, or cancelled, is cancelled at the peer too (ListTasks by context
id, then CancelTask). Receipts go through a :class:`~guildnet.node.delegation.outbox.ReceiptOutbox`: kept
before they are sent, retried until the registry files or refuses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from guildnet.protocols import a2a, receipts, schema_check
from guildnet.protocols.canonical import content_hash
from guildnet.registry.client import (
    AgentEntry,
    LogForked,
    RegistryClient,
    RegistryError,
    Standing,
    UntrustworthyRecord,
)

from ..a2a.client import A2AClient
from ..a2a.executor import RECEIPT_KEY
from ..flywheel.process_log import CallRecord, Outcome
from ..identity import Signer
from ..tracing import child_traceparent, new_traceparent, trace_id
from . import push_wait
from .cards import PeerCards, PeerTarget
from .discovery import PeerIndex
from .domains import DomainVerifier
from .outbox import ReceiptOutbox, ReceiptState
from .ranking import Candidate, Decision, Preference, rank
from .schemas import NoUsableSchema, Pin, SchemaPins

log = logging.getLogger(__name__)
_SIGNED_BY_ANOTHER_KEY = "receipt is not signed by the called agent's key in force"
_NO_EVIDENCE = Standing(score=0.5, lower_bound=0.0, evidence=0.0, receipts=0)
CANCEL_SECONDS = 3.0
"""How long cancelling an abandoned call at the peer may take (after the deadline, or on Ctrl-C)."""
Reason = Literal["no-candidate", "invalid-input", "all-failed", "deadline", "forked"]
AttemptOutcome = Literal["success", "failure", "timeout", "invalid-input", "invalid-output", "bad-receipt",
                         "unverified", "error"]
ProgressHandler = Callable[[str, str], None]
"""Told ``(agent name, text)`` for each progress message the called peer streams."""


class DelegationFailed(Exception):
    """No candidate completed the task within the deadline; ``attempts`` says what each one did and ``reason``
    why in one word: ``no-candidate`` (nobody eligible offers the skill), ``invalid-input`` (no candidate's
    input schema accepts the input: nobody was called), ``all-failed``, ``deadline`` or ``forked``."""

    def __init__(self, message: str, attempts: list[Attempt], decision: Decision | None,
                 reason: Reason = "all-failed") -> None:
        super().__init__(message)
        self.attempts = attempts
        self.decision = decision
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Attempt:
    agent_id: str
    name: str
    outcome: AttemptOutcome
    detail: str
    latency_ms: float
    organisation: str = ""
    """The name of the agent's organisation (as its facts say)."""


@dataclass(frozen=True, slots=True)
class DelegationResult:
    output: dict[str, Any]
    agent: AgentEntry
    receipt: str
    traceparent: str
    decision: Decision
    attempts: list[Attempt]
    context_id: str = ""
    """The A2A context id this delegation's calls carried (the peer's task is found by it)."""


@dataclass
class Delegator:
    registry: RegistryClient
    index: PeerIndex
    a2a: A2AClient
    identity: Signer
    """The calling agent: its id is the caller named in receipts, its key in force countersigns them."""
    organisation: str
    """The caller's organisation DID: peers of the same organisation are not candidates."""
    expected_tokens: tuple[int, int] = (500, 500)
    reputation_ttl: float = 30.0
    reputation_retry: float = 5.0
    """Seconds before asking again after the registry could not give reputations (at most ``reputation_ttl``)."""
    max_attempts: int = 3
    max_candidates: int = 64
    """Candidates considered per delegation, whatever the registry lists."""
    max_per_org: int = 4
    """Candidates of one organisation considered per delegation."""
    max_calls_per_org: int = 1
    """Agents of one organisation called per delegation: after one failed, the next organisation's turn."""
    min_age: float = 86400.0
    """Seconds an agent must have been registered before a reputation that clears the bar makes it preferred."""
    pins: SchemaPins = field(default_factory=SchemaPins)
    """The output schema each skill's results are checked against (never the callee's own word)."""
    recorder: Callable[[CallRecord], Awaitable[None]] | None = None
    """Where outbound calls go as process data (the node's process log); None records nothing."""
    refused_receipts: list[str] = field(default_factory=list)
    """Why the registry refused receipts this delegator submitted (see :meth:`flush`)."""
    outbox: ReceiptOutbox | None = None
    """Where receipts are kept until filed (default: in memory only, no retries)."""
    receipt_states: dict[str, ReceiptState] = field(default_factory=dict)
    """What the registry made of each receipt this delegator submitted, by receipt (see :meth:`flush`)."""
    domains: DomainVerifier | None = None
    """How this node checks candidates' domain proofs itself; needed to require a verified domain."""
    require_verified_domain: bool = False
    """Only organisations whose domain this node proved itself are candidates (docs/domains.md)."""
    cards: PeerCards | None = None
    """The peers' verified agent cards: which bindings to call them on (default: one over :attr:`a2a`)."""
    inbox: push_wait.PushInbox | None = None
    """This node's webhook for delegated tasks (set by a node that serves): without one, calls block."""
    push_after: float = 120.0
    """A delegation with a longer deadline than this (seconds) is a long task: a peer whose signed card declares
    push notifications is asked to push, instead of holding a connection open (:mod:`.push_wait`)."""
    poll_first: float = 5.0
    """Seconds before the first GetTask of a pushed call when no notification came; then doubling, up to
    :attr:`poll_max`."""
    poll_max: float = 60.0
    _reputation: dict[tuple[str, str], tuple[float, Standing]] = field(default_factory=dict)
    """(agent, skill) -> (when to ask again, on the monotonic clock; the standing last known)."""
    _latency: dict[str, float] = field(default_factory=dict)
    _submissions: set[asyncio.Future[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        # Every call proves its caller (the callee's claim names only an authenticated caller): the A2A client
        # signs with this delegator's identity.
        if self.a2a.signer is None:
            self.a2a.signer = self.identity
        elif self.a2a.signer.id != self.identity.id:
            raise ValueError("the A2A client signs as another agent than the delegator's identity")
        if self.outbox is None:
            self.outbox = ReceiptOutbox(self.registry)
        if self.cards is None:
            self.cards = PeerCards(self.a2a)

    def price(self, entry: AgentEntry) -> float:
        model = entry.facts.model
        if model is None:
            return 0.0
        tokens_in, tokens_out = self.expected_tokens
        return float(model.cost_per_1k_input * tokens_in / 1000 + model.cost_per_1k_output * tokens_out / 1000)

    async def _reputations(self, agent_ids: list[str], skill: str) -> list[Standing]:
        """Each agent's standing for ``skill``: cached for ``reputation_ttl``, the rest in one batched request;
        an agent the registry has no score for (or a registry that does not answer) has no evidence. A failed
        request is not repeated for ``reputation_retry`` seconds (the standings known before are kept), so a
        registry that computes no reputation, or is down, does not cost every delegation a round trip."""
        now = time.monotonic()
        stale = [a for a in agent_ids if self._reputation.get((a, skill), (-math.inf, _NO_EVIDENCE))[0] <= now]
        if stale:
            try:
                fetched = await self.registry.reputations(stale, skill)
            except (RegistryError, OSError, ValueError) as exc:  # no reputation computed, or the registry is down
                log.debug("no reputations for %s: %s", skill, exc)
                for agent in stale:
                    known = self._reputation.get((agent, skill), (now, _NO_EVIDENCE))[1]
                    self._reputation[(agent, skill)] = (now + min(self.reputation_retry, self.reputation_ttl), known)
            else:
                for agent in stale:
                    self._reputation[(agent, skill)] = (now + self.reputation_ttl, fetched.get(agent, _NO_EVIDENCE))
        return [self._reputation.get((a, skill), (now, _NO_EVIDENCE))[1] for a in agent_ids]

    def _considered(self, entries: list[AgentEntry]) -> list[AgentEntry]:
        """At most ``max_per_org`` per organisation and ``max_candidates`` in all, the longest registered first."""
        per_org: dict[str, int] = {}
        kept = []
        for entry in sorted(entries, key=lambda e: (e.registered_at or math.inf, e.id)):
            org = entry.facts.organisation.id
            if per_org.get(org, 0) < self.max_per_org:
                per_org[org] = per_org.get(org, 0) + 1
                kept.append(entry)
                if len(kept) == self.max_candidates:
                    break
        return kept

    def _candidate(self, e: AgentEntry, standing: Standing) -> Candidate:
        return Candidate(agent_id=e.id, name=e.facts.name, organisation=e.facts.organisation.name,
                         endpoint=e.facts.endpoints.a2a or "", live=e.live, reputation_lower=standing.lower_bound,
                         reputation_score=standing.score, evidence=standing.evidence, price=self.price(e),
                         recent_latency_ms=self._latency.get(e.id),
                         age_seconds=max(0.0, time.time() - e.registered_at) if e.registered_at else 0.0)

    async def _candidates(self, skill: str, require_verified_domain: bool | None
                          ) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
        """The candidates to rank, and those refused for their domain (with why)."""
        await self.index.track(skill)
        entries = self._considered(self.index.candidates(skill, exclude_org=self.organisation))
        refused: list[tuple[Candidate, str]] = []
        if self.require_verified_domain if require_verified_domain is None else require_verified_domain:
            if self.domains is None:
                raise ValueError("a verified domain is required, but this delegator has no DomainVerifier")
            entries, unproven = await self.domains.split(entries)
            refused = [(self._candidate(e, _NO_EVIDENCE), why) for e, why in unproven]
        standings = await self._reputations([e.id for e in entries], skill)
        return [self._candidate(e, s) for e, s in zip(entries, standings, strict=True)], refused

    async def candidates(self, skill: str, *, require_verified_domain: bool | None = None) -> list[Candidate]:
        return (await self._candidates(skill, require_verified_domain))[0]

    async def similar_skills(self, skill: str, *, limit: int = 3) -> list[str]:
        """Skill ids live agents offer that look like ``skill`` (case aside, a typo away), best first: what to
        suggest when nobody offers ``skill`` itself."""
        offered: dict[str, str] = {}
        for text in (skill, None):  # agents whose text matches, then the first hundred live ones
            try:
                page = await self.registry.search(q=text, live=True, limit=50 if text else 100)
            except (RegistryError, OSError, ValueError):
                continue
            for entry in page.agents:
                for offered_skill in entry.facts.skills:
                    offered.setdefault(offered_skill.id.lower(), offered_skill.id)
        wanted = skill.lower()
        close = difflib.get_close_matches(wanted, list(offered), n=limit, cutoff=0.6)
        return [offered[name] for name in close if offered[name] != skill]

    async def explain(self, skill: str, *, min_reputation: float = 0.5, budget: float | None = None,
                      prefer: Preference = "cost", require_verified_domain: bool | None = None) -> Decision:
        candidates, refused = await self._candidates(skill, require_verified_domain)
        decision = rank(candidates, min_reputation=min_reputation, budget=budget, prefer=prefer,
                        min_age=self.min_age)
        decision.excluded.extend(refused)
        return decision

    async def delegate(self, skill: str, arguments: Mapping[str, Any], *, deadline: float = 30.0,
                       budget: float | None = None, min_reputation: float = 0.5, prefer: Preference = "cost",
                       traceparent: str | None = None, require_verified_domain: bool | None = None,
                       on_progress: ProgressHandler | None = None, push: bool | None = None) -> DelegationResult:
        """Delegate ``skill``; ``require_verified_domain`` overrides :attr:`require_verified_domain` for this call.
        With ``on_progress`` the peer is called with a stream and its progress messages are passed on. ``push``
        says whether to ask for push delivery (default: when ``deadline`` exceeds :attr:`push_after`)."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + deadline
        trace = child_traceparent(traceparent) if traceparent else new_traceparent()
        context_id = str(uuid.uuid4())
        pushed = (deadline > self.push_after if push is None else push) and on_progress is None
        self._stop_if_forked()
        try:
            async with asyncio.timeout_at(ends):
                decision = await self.explain(skill, min_reputation=min_reputation, budget=budget, prefer=prefer,
                                              require_verified_domain=require_verified_domain)
        except TimeoutError:
            raise DelegationFailed(f"ranking the candidates for {skill!r} took longer than the {deadline:.1f} s "
                                   f"deadline", [], None, "deadline") from None
        if not decision.order:
            why = "; ".join(f"{c.name} of {c.organisation}: {reason}" for c, reason in decision.excluded[:5])
            raise DelegationFailed(f"no live agent of another organisation offers skill {skill!r}"
                                   + (f" that this delegation accepts ({why})" if why else ""), [], decision,
                                   "no-candidate")
        attempts: list[Attempt] = []
        calls_per_org: dict[str, int] = {}
        order = decision.order
        for position, candidate in enumerate(order):
            remaining = ends - loop.time()
            if remaining <= 0:
                break
            entry = self.index.get(candidate.agent_id)
            if entry is None or self.index.is_revoked(candidate.agent_id):
                continue  # revoked or gone since ranking
            organisation = entry.facts.organisation.id
            if calls_per_org.get(organisation, 0) >= self.max_calls_per_org:
                continue  # one organisation's many agents cannot use up the attempts
            # a fair share of what is left, so a stuck peer cannot eat the time of the ones after it
            share = remaining / min(len(order) - position, self.max_attempts - len(attempts))
            problem = await self._in_log(entry, share)
            if problem is None:
                try:
                    pin = await self.pins.pin_for(skill, entry)
                except NoUsableSchema as exc:
                    problem = f"no output schema to check its results against: {exc}"
            if problem is not None:  # never call an agent whose registration or results cannot be verified
                attempts.append(Attempt(entry.id, entry.facts.name, "unverified", problem, 0.0,
                                        entry.facts.organisation.name))
                continue
            refused = _input_problem(entry, skill, arguments)
            if refused is not None:  # the peer would refuse it: say so without sending it
                attempts.append(Attempt(entry.id, entry.facts.name, "invalid-input", refused, 0.0,
                                        entry.facts.organisation.name))
                continue
            calls_per_org[organisation] = calls_per_org.get(organisation, 0) + 1
            attempt, result = await self._try(entry, skill, dict(arguments), trace, min(share, ends - loop.time()),
                                              pin, context_id, on_progress, pushed)
            attempts.append(attempt)
            await self._record(entry, skill, arguments, result[0] if result else None, attempt, trace,
                               candidate.price)
            if result is not None:
                output, receipt = result
                return DelegationResult(output, entry, receipt, trace, decision, attempts, context_id)
            if sum(a.outcome != "invalid-input" for a in attempts) >= self.max_attempts:
                break
        if attempts and all(a.outcome == "invalid-input" for a in attempts):
            raise DelegationFailed(f"the input does not match skill {skill!r} as its agents publish it: "
                                   f"{attempts[0].detail}; nobody was called", attempts, decision, "invalid-input")
        out_of_time = loop.time() >= ends or bool(attempts and attempts[-1].outcome == "timeout")
        tried = [a for a in attempts if a.outcome != "invalid-input"]
        why = (f": {tried[0].name} of {tried[0].organisation}: {tried[0].outcome} ({tried[0].detail})"
               if len(tried) == 1 else "")  # one peer: its reason is the reason
        raise DelegationFailed(f"no candidate for skill {skill!r} completed the task ({len(tried)} tried, "
                               f"{len(decision.order)} ranked){why}", attempts, decision,
                               "deadline" if out_of_time else "all-failed")

    def _stop_if_forked(self) -> None:
        if self.registry.forked is not None:
            raise DelegationFailed(f"delegation through {self.registry.base_url} is stopped: its log is not the one "
                                   f"this node saw before ({self.registry.forked})", [], None, "forked")

    async def _in_log(self, entry: AgentEntry, within: float) -> str | None:
        """Why ``entry`` cannot be called (its registration is not proven to be in the registry's log), or None.
        Proven once per record; a fork found on the way stops the whole delegation."""
        try:
            async with asyncio.timeout(within):
                await self.registry.check_inclusion(entry)
        except LogForked:
            self._stop_if_forked()
            raise
        except UntrustworthyRecord as exc:
            return str(exc)
        except (RegistryError, OSError) as exc:  # TimeoutError is an OSError
            return f"its registration could not be proven in the registry's log: {type(exc).__name__}: {exc}"
        return None

    async def _try(self, entry: AgentEntry, skill: str, arguments: dict[str, Any], trace: str,
                   within: float, pin: Pin, context_id: str, on_progress: ProgressHandler | None,
                   pushed: bool = False) -> tuple[Attempt, tuple[dict[str, Any], str] | None]:
        """One call: whatever the callee sends back (a timeout, a refusal, a malformed or hostile reply) ends
        as an :class:`Attempt`, never as an exception, so the next candidate is tried. A call abandoned at the
        deadline (or cancelled) is cancelled at the peer too."""
        started = time.perf_counter()

        def attempt(outcome: Any, detail: str) -> Attempt:
            latency = (time.perf_counter() - started) * 1000
            if outcome in ("success", "failure"):
                self._latency[entry.id] = latency
            return Attempt(entry.id, entry.facts.name, outcome, detail, latency, entry.facts.organisation.name)

        message = a2a.skill_request(arguments, skill, context_id=context_id)
        message["metadata"] = {"traceparent": trace, "skill": skill}
        endpoint: str | dict[str, Any] = entry.facts.endpoints.a2a or ""
        try:
            async with asyncio.timeout(within):
                assert self.cards is not None
                peer = await self.cards.target(entry, within)
                endpoint = peer.endpoint
                if pushed and peer.pushes and self.inbox is not None:
                    result = await self._pushed(peer, message, self.inbox)
                elif on_progress is None:
                    result = await self.a2a.send_message(endpoint, message)
                else:
                    result = await self._streamed(endpoint, message, lambda text: on_progress(entry.facts.name, text))
                return await self._settle(entry, skill, arguments, result, pin, attempt)
        except TimeoutError:  # cancelled at the peer in the background: the next candidate's time is its own
            self._background(self._cancel_at_peer(endpoint, context_id))
            return attempt("timeout", f"no answer within {within:.1f} s (its task there is being cancelled)"), None
        except asyncio.CancelledError:
            await asyncio.shield(self._cancel_at_peer(endpoint, context_id))
            raise
        except Exception as exc:
            return attempt("error", f"{type(exc).__name__}: {str(exc)[:300]}"), None

    async def _streamed(self, endpoint: str | dict[str, Any], message: dict[str, Any],
                        progress: Callable[[str], None]
                        ) -> dict[str, Any]:
        """SendStreamingMessage, passing each progress message on; then the settled task, read whole."""
        task_id: str | None = None
        async for event in self.a2a.stream(endpoint, message):
            if "message" in event:
                return {"message": event["message"]}
            update = event.get("statusUpdate") or event.get("task") or {}
            if isinstance(update, dict):
                task_id = str(update.get("taskId") or update.get("id") or task_id or "") or None
                status = update.get("status")
                text = _status_text(status)
                if text and isinstance(status, dict) and status.get("state") == "TASK_STATE_WORKING":
                    progress(text)
        if task_id is None:
            raise ValueError("the peer's stream named no task")
        return {"task": await self.a2a.get_task(endpoint, task_id)}

    async def _pushed(self, peer: PeerTarget, message: dict[str, Any], inbox: push_wait.PushInbox
                      ) -> dict[str, Any]:
        """SendMessage returning at once with a push config naming this node's webhook; then the settled task,
        read when a verified notification says so (or at a poll). A peer that refuses the config is called again
        with a blocking call."""
        with inbox.expect(peer.key) as slot:
            if slot is None:  # too many calls already wait for pushes
                return await self.a2a.send_message(peer.endpoint, message)
            try:
                result = await self.a2a.send_message(peer.endpoint, message, return_immediately=True,
                                                     push=slot.config)
            except a2a.A2AError as exc:
                if exc.code not in (a2a.INVALID_PARAMS, a2a.PUSH_NOT_SUPPORTED):
                    raise
                log.info("the peer refused the push config (%s): calling it again without", exc.message)
                return await self.a2a.send_message(peer.endpoint, message)
            task = result.get("task")
            status = task.get("status") if isinstance(task, dict) else None
            if not isinstance(task, dict) or not isinstance(status, dict) or \
                    status.get("state") in a2a.TERMINAL_STATES | a2a.INTERRUPTED_STATES:
                return result
            task_id = slot.task_id = str(task.get("id"))
            return {"task": await push_wait.settled(slot, lambda: self.a2a.get_task(peer.endpoint, task_id),
                                                    poll_first=self.poll_first, poll_max=self.poll_max)}

    async def _cancel_at_peer(self, endpoint: str | dict[str, Any], context_id: str) -> None:
        """Cancel what the peer still runs for this delegation's context (best effort, bounded)."""
        try:
            async with asyncio.timeout(CANCEL_SECONDS):
                listed = await self.a2a.list_tasks(endpoint, context_id=context_id)
                for task in listed.get("tasks") or ():
                    status = task.get("status") if isinstance(task, dict) else None
                    if isinstance(status, dict) and status.get("state") not in a2a.TERMINAL_STATES:
                        await self.a2a.cancel_task(endpoint, str(task.get("id")))
                        log.info("cancelled task %s at %s", task.get("id"), _where(endpoint))
        except Exception as exc:  # the peer is gone or refuses: its task ends on its own
            log.info("could not cancel the task of context %s at %s: %s: %s", context_id, _where(endpoint),
                     type(exc).__name__, exc)

    async def _settle(self, entry: AgentEntry, skill: str, arguments: dict[str, Any], result: Any, pin: Pin,
                      attempt: Callable[[Any, str], Attempt]) -> tuple[Attempt, tuple[dict[str, Any], str] | None]:
        task = result.get("task") if isinstance(result, dict) else None
        if not isinstance(task, dict):
            return attempt("error", "the peer answered without a task object"), None
        status = task.get("status")
        state = status.get("state") if isinstance(status, dict) else None
        output = a2a.artifact_output(task)
        metadata = task.get("metadata")
        token = metadata.get(RECEIPT_KEY) if isinstance(metadata, dict) else None
        said = _status_text(status)
        if token is None and state in a2a.TERMINAL_STATES and state != "TASK_STATE_COMPLETED":
            # nothing signed to countersign (e.g. refused before it ran): report what the peer said
            return attempt("failure", f"task ended {state}" + (f": {said}" if said else "")), None
        problem = self._check_receipt(token, entry, skill, arguments, output, task)
        if problem == _SIGNED_BY_ANOTHER_KEY:  # the callee may have rotated since we read its record: read it again
            with contextlib.suppress(RegistryError, UntrustworthyRecord, OSError):
                entry = await self.registry.get(entry.id)
                problem = self._check_receipt(token, entry, skill, arguments, output, task)
        if problem is not None:
            return attempt("bad-receipt", problem), None
        assert isinstance(token, str)
        if state != "TASK_STATE_COMPLETED" or output is None:
            await self._submit(token, "failure", f"task ended {state}")
            return attempt("failure", f"task ended {state}" + (f": {said}" if said else "")), None
        schema_problem = await pin.problem_with(output)
        if schema_problem is not None:
            await self._submit(token, "failure", "output does not match the skill's output schema")
            return attempt("invalid-output", f"{schema_problem} (schema pinned from {pin.source})"), None
        receipt = await self._submit(token, "success", None)
        return attempt("success", "completed"), (output, receipt)

    async def _record(self, entry: AgentEntry, skill: str, arguments: Mapping[str, Any],
                      output: dict[str, Any] | None, attempt: Attempt, trace: str, price: float) -> None:
        if self.recorder is None:
            return
        outcome: Outcome = ("ok" if attempt.outcome == "success"
                            else "rejected" if attempt.outcome in ("failure", "invalid-output", "bad-receipt",
                                                                   "invalid-input")
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
        """Is this the called agent's statement, signed by its key in force, about exactly this task, input and
        output?"""
        if not isinstance(token, str):
            return "the peer returned no signed receipt"
        try:
            claim, signer = receipts.parse_claim(token)
        except receipts.ReceiptRefused as exc:
            return f"receipt does not verify: {exc.detail}"
        if claim.callee != entry.id:
            return "receipt names another callee"
        if signer != entry.current_key:
            return _SIGNED_BY_ANOTHER_KEY
        if claim.caller != self.identity.id:
            return "receipt names another caller"
        if claim.skill != skill or claim.task_id != task.get("id"):
            return "receipt names another task or skill"
        if claim.input_sha256 != content_hash(arguments):
            return "receipt hashes another input"
        if claim.status == "completed" and claim.output_sha256 != content_hash(output):
            return "receipt hashes another output"
        return None

    async def _submit(self, token: str, verdict: Literal["success", "failure"], reason: str | None) -> str:
        """Countersign and keep in the outbox now; submit in the background so feedback never delays the caller."""
        receipt: str = receipts.caller_countersign(token, self.identity.key, verdict, reason=reason)
        outbox = self.outbox
        assert outbox is not None
        try:
            await outbox.keep(receipt, self.identity.id)
        except Exception:  # the node's database failing must not fail a delegation that succeeded
            log.exception("could not keep a receipt in the outbox; sending it once")
        self.receipt_states[receipt] = ReceiptState("pending", "not sent yet")

        async def submit() -> None:
            state = await outbox.file(receipt, self.identity.key)
            self.receipt_states[receipt] = state
            if state.state != "filed":
                log.warning("%s", state.describe())
                self.refused_receipts.append(state.reason or state.state)

        self._background(submit())
        return receipt

    def _background(self, work: Awaitable[None]) -> None:
        """Run ``work`` without making the caller wait; :meth:`flush` waits for it."""
        task = asyncio.ensure_future(work)
        self._submissions.add(task)
        task.add_done_callback(self._submissions.discard)

    async def flush(self) -> None:
        """Wait for receipts still being submitted and abandoned calls still being cancelled (before shutting
        down, or to read fresh reputation)."""
        if self._submissions:
            await asyncio.gather(*list(self._submissions), return_exceptions=True)


def _where(endpoint: str | dict[str, Any]) -> str:
    return endpoint if isinstance(endpoint, str) else str(endpoint.get("name"))


def _status_text(status: Any) -> str:
    """The text the peer gave with a task's status (why it failed, or its progress), bounded."""
    message = status.get("message") if isinstance(status, dict) else None
    return a2a.message_text(message)[:500] if isinstance(message, dict) else ""


def _input_problem(entry: AgentEntry, skill: str, arguments: Mapping[str, Any]) -> str | None:
    """Why ``arguments`` break the input schema ``entry`` publishes for ``skill``, or None (also when the schema
    cannot be applied here: the peer then decides)."""
    declared = entry.facts.skill(skill)
    if declared is None:
        return None
    try:
        return schema_check.first_error(schema_check.cached_checker(declared.input_schema), dict(arguments))
    except Exception:  # an unsafe or broken schema: not this check's business
        return None
