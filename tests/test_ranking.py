"""The delegation ranking policy: cheapest trusted peer first, explained."""

from __future__ import annotations

from guildnet.node.delegation.ranking import Candidate, rank


def candidate(name: str, lower: float, price: float, *, live: bool = True, latency: float | None = None) -> Candidate:
    return Candidate(agent_id=f"did:key:{name}", name=name, organisation=f"org-{name}", endpoint="http://x",
                     live=live, reputation_lower=lower, reputation_score=lower + 0.1, evidence=10, price=price,
                     recent_latency_ms=latency)


def test_cheapest_candidate_that_clears_the_bar_wins() -> None:
    cheap_untrusted = candidate("cheap", 0.2, 0.001)
    mid_trusted = candidate("mid", 0.8, 0.01)
    pricey_trusted = candidate("pricey", 0.95, 0.1)
    decision = rank([pricey_trusted, cheap_untrusted, mid_trusted], min_reputation=0.6)
    assert [c.name for c in decision.order] == ["mid", "pricey", "cheap"]
    assert decision.ranked[0].clears_bar and not decision.ranked[2].clears_bar
    table = decision.explain()
    assert "cheapest whose reputation lower bound clears the bar" in table and "fallback" in table


def test_dead_and_over_budget_candidates_are_excluded_with_a_reason() -> None:
    decision = rank([candidate("dead", 0.9, 0.01, live=False), candidate("dear", 0.9, 5.0),
                     candidate("ok", 0.9, 0.01)], budget=1.0)
    assert [c.name for c in decision.order] == ["ok"]
    reasons = dict((c.name, why) for c, why in decision.excluded)
    assert reasons["dead"] == "not live" and "over budget" in reasons["dear"]


def test_preferences_reorder_trusted_candidates() -> None:
    fast = candidate("fast", 0.7, 0.05, latency=20)
    trusted = candidate("trusted", 0.99, 0.05, latency=400)
    cheap = candidate("cheap", 0.7, 0.01, latency=900)
    assert rank([fast, trusted, cheap], prefer="cost").order[0].name == "cheap"
    assert rank([fast, trusted, cheap], prefer="reputation").order[0].name == "trusted"
    assert rank([fast, trusted, cheap], prefer="latency").order[0].name == "fast"


def test_with_no_trusted_candidate_the_best_lower_bound_goes_first() -> None:
    decision = rank([candidate("a", 0.1, 0.001), candidate("b", 0.3, 0.1)], min_reputation=0.9)
    assert [c.name for c in decision.order] == ["b", "a"]
    assert "no candidate clears" in decision.ranked[0].reason


def test_a_young_agent_leads_only_once_it_has_lasted() -> None:
    """A reputation bought fast (a sybil a day old) ranks after every older agent that clears the bar; among
    young agents alone the usual order holds, and below the bar age changes nothing."""
    from dataclasses import replace

    sybil = replace(candidate("sybil", 0.95, 0.001), age_seconds=3600)
    veteran = replace(candidate("veteran", 0.8, 0.05), age_seconds=90 * 86400)
    newcomer = replace(candidate("newcomer", 0.1, 0.0), age_seconds=60)
    decision = rank([sybil, veteran, newcomer], min_reputation=0.6, min_age=86400)
    assert [c.name for c in decision.order] == ["veteran", "sybil", "newcomer"]
    assert "registered 3600 s ago" in decision.ranked[1].reason
    assert [c.name for c in rank([sybil, newcomer], min_reputation=0.6, min_age=86400).order] == ["sybil", "newcomer"]
    assert [c.name for c in rank([sybil, veteran], min_reputation=0.6).order] == ["sybil", "veteran"]  # no minimum
