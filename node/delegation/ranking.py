"""Choosing a peer for a delegated task, and saying why (pure: no I/O).

Default policy, SLM-first economics: among live candidates whose reputation *lower bound* for the skill
clears the bar, take the cheapest expected cost; break ties by the higher lower bound, then by lower recent
latency. Candidates below the bar are kept as a fallback, best lower bound first, so a task still finds a
peer when nobody has earned trust yet (a new federation), but never ahead of a trusted one.
``prefer="reputation"`` ranks by lower bound first and ``prefer="latency"`` by recent latency first.

An agent registered less than ``min_age`` seconds ago is not preferred even when its reputation clears the
bar: it comes after every older candidate that clears it (a reputation bought quickly through colluding
receipts has to last before it leads). When all candidates are young they rank among themselves as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Preference = Literal["cost", "reputation", "latency"]


@dataclass(frozen=True, slots=True)
class Candidate:
    agent_id: str
    name: str
    organisation: str
    endpoint: str
    live: bool
    reputation_lower: float
    reputation_score: float
    evidence: float
    price: float
    """Expected cost of one task, from the AgentFacts price per 1k tokens and the task's expected tokens."""
    recent_latency_ms: float | None = None
    age_seconds: float = float("inf")
    """Since the agent first registered (as the registry states it)."""


@dataclass(frozen=True, slots=True)
class Ranked:
    candidate: Candidate
    rank: int
    clears_bar: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    ranked: list[Ranked]
    min_reputation: float
    prefer: Preference
    excluded: list[tuple[Candidate, str]] = field(default_factory=list)

    @property
    def order(self) -> list[Candidate]:
        return [r.candidate for r in self.ranked]

    def explain(self) -> str:
        """A table for people: every candidate, its numbers, and why the winner won."""
        header = (f"{'#':>2}  {'agent':<18} {'org':<12} {'rep lower':>9} {'score':>6} {'evidence':>8} "
                  f"{'price':>9} {'latency':>9}  why")
        lines = [header]
        for entry in self.ranked:
            c = entry.candidate
            latency = f"{c.recent_latency_ms:.0f} ms" if c.recent_latency_ms is not None else "-"
            lines.append(f"{entry.rank:>2}  {c.name[:18]:<18} {c.organisation[:12]:<12} {c.reputation_lower:>9.3f} "
                         f"{c.reputation_score:>6.3f} {c.evidence:>8.1f} {c.price:>9.5f} {latency:>9}  {entry.reason}")
        for c, why in self.excluded:
            lines.append(f" -  {c.name[:18]:<18} {c.organisation[:12]:<12} excluded: {why}")
        return "\n".join(lines)


def _key(c: Candidate, prefer: Preference) -> tuple[float, ...]:
    latency = c.recent_latency_ms if c.recent_latency_ms is not None else float("inf")
    if prefer == "reputation":
        return (-c.reputation_lower, c.price, latency)
    if prefer == "latency":
        return (latency, -c.reputation_lower, c.price)
    return (c.price, -c.reputation_lower, latency)


def rank(candidates: Sequence[Candidate], *, min_reputation: float = 0.5, budget: float | None = None,
         prefer: Preference = "cost", min_age: float = 0.0) -> Decision:
    excluded: list[tuple[Candidate, str]] = []
    eligible: list[Candidate] = []
    for c in candidates:
        if not c.live:
            excluded.append((c, "not live"))
        elif budget is not None and c.price > budget:
            excluded.append((c, f"price {c.price:.5f} over budget {budget:.5f}"))
        else:
            eligible.append(c)
    trusted = sorted((c for c in eligible if c.reputation_lower >= min_reputation),
                     key=lambda c: (c.age_seconds < min_age, *_key(c, prefer)))
    untrusted = sorted((c for c in eligible if c.reputation_lower < min_reputation),
                       key=lambda c: (-c.reputation_lower, c.price))
    ranked: list[Ranked] = []
    mature = sum(1 for c in trusted if c.age_seconds >= min_age)
    for c in trusted:
        if mature and c.age_seconds < min_age:
            why = f"clears the bar but registered {c.age_seconds:.0f} s ago (< {min_age:.0f} s): after older ones"
        elif not ranked:
            why = {"cost": "cheapest whose reputation lower bound clears the bar",
                   "reputation": "highest reputation lower bound", "latency": "fastest recently"}[prefer]
        else:
            why = f"clears the bar; after #{len(ranked)} by {prefer}"
        ranked.append(Ranked(c, len(ranked) + 1, True, why))
    for c in untrusted:
        why = (f"below the bar ({c.reputation_lower:.3f} < {min_reputation}); fallback by lower bound"
               if trusted or ranked else f"no candidate clears {min_reputation}; best lower bound first")
        ranked.append(Ranked(c, len(ranked) + 1, False, why))
    return Decision(ranked, min_reputation, prefer, excluded)
