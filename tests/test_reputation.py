"""Reputation math: each rule of the model on its own, sybil rings, unreliable agents padding with cheap tasks,
self-rating, stale evidence, the beta interval.

Each simulation runs the same ``compute`` the registry runs, on a small world: three pre-trusted organisations
and ten honest ones whose agents call each other (90 % success), plus the actors of the scenario. The attacks of
issue 18, swept, are in tests/test_reputation_attacks.py (the benchmark's own scenarios).
"""

from __future__ import annotations

import math
import random

import pytest
from test_load import bench_module

from guildnet.protocols.reputation import (
    DAY,
    Params,
    Rating,
    Reputation,
    Score,
    beta_ppf,
    betainc,
    combine,
    compute,
    eigentrust,
    forward_edges,
    judges,
)

# The honest world is the attack benchmark's (bench/reputation_attacks.py), so the two describe one world.
WORLD = bench_module("reputation_attacks")
NOW: float = WORLD.NOW
PARAMS = Params(now=NOW)
SEED: list[str] = list(WORLD.SEEDS)
HONEST: list[str] = list(WORLD.HONEST_ORGS)
SKILL: str = WORLD.SKILL


def honest_world(receipts: int = 2000) -> list[Rating]:
    """13 organisations (the 3 seeds first), 5 agents each, calling each other over 30 days, 90 % success."""
    world: list[Rating] = WORLD.honest_world(receipts)
    return world


def served(agent: str, org: str, outcomes: list[bool], *, skill: str = SKILL, start: float = NOW) -> list[Rating]:
    """``agent`` served one task per outcome, for callers spread over the honest organisations, 10 min apart."""
    callers = ["P0", "H3", "H5", "P1", "H8"]
    return [Rating(f"{callers[i % 5]}/a{i % 3}", callers[i % 5], agent, org, skill, ok, start - i * 600)
            for i, ok in enumerate(outcomes)]


def ring(size: int, receipts: int, *, one_org: bool, seed: int = 3) -> list[Rating]:
    rng = random.Random(seed)
    out = []
    for _ in range(receipts):
        a, b = rng.sample(range(size), 2)
        org_a, org_b = ("S", "S") if one_org else (f"S{a}", f"S{b}")
        out.append(Rating(f"sybil{a}", org_a, f"sybil{b}", org_b, SKILL, True, NOW - rng.random() * DAY))
    return out


def best_sybil(rep: Reputation, size: int = 50) -> Score:
    return max((rep.score(f"sybil{i}", SKILL) for i in range(size)), key=lambda s: s.lower_bound)


HONEST_AGENT = served("HX/x", "HX", [True] * 20)


def test_sybil_ring_in_one_organisation_earns_nothing() -> None:
    rep = compute([*honest_world(), *HONEST_AGENT, *ring(50, 1000, one_org=True)], SEED, PARAMS)
    honest, sybil = rep.score("HX/x", SKILL), best_sybil(rep)
    assert rep.receipts_same_org == 1000
    assert sybil.receipts == 0 and sybil.evidence == 0.0
    assert sybil.lower_bound == pytest.approx(0.025)  # the Beta(1, 1) prior
    assert honest.receipts == 20 and honest.evidence > 12 and honest.lower_bound > 0.75
    assert honest.lower_bound > sybil.lower_bound + 0.7


def test_sybil_ring_across_fifty_organisations_earns_nothing() -> None:
    rep = compute([*honest_world(), *HONEST_AGENT, *ring(50, 1000, one_org=False)], SEED, PARAMS)
    honest, sybil = rep.score("HX/x", SKILL), best_sybil(rep)
    assert all(rep.org_trust[f"S{i}"] == 0.0 for i in range(50))  # no path from the seed reaches the ring
    assert sybil.receipts > 0 and sybil.evidence == 0.0
    assert honest.lower_bound > 0.75 > 0.03 > sybil.lower_bound


def test_sybil_ring_with_a_real_customer_stays_bounded() -> None:
    """One honest organisation once used S0; then the other 49 sybils pour 1,000 more ratings onto S0."""
    leak = [Rating("H1/a0", "H1", "sybil0", "S0", SKILL, True, NOW)]
    pour = [Rating(f"sybil{1 + i % 49}", f"S{1 + i % 49}", "sybil0", "S0", SKILL, True, NOW) for i in range(1000)]
    rep = compute([*honest_world(), *HONEST_AGENT, *ring(50, 1000, one_org=False), *leak, *pour], SEED, PARAMS)
    honest, target = rep.score("HX/x", SKILL), rep.score("sybil0", SKILL)
    assert target.receipts > 1001  # 1 real + 1000 poured + what the random ring sent
    # S0 is known to H1, so the sybils that rated it have a little history as judges, but no trust reaches them:
    # none of their word counts, and S0's evidence is H1's one receipt (H1's say alone, within the cap).
    assert all(rep.history[f"S{i}"] == pytest.approx(1 / PARAMS.min_history) for i in range(1, 50))
    assert sum(rep.rater_weight(f"S{i}") for i in range(50)) == 0.0
    assert target.evidence == pytest.approx(rep.rater_weight("H1"), rel=1e-9)
    assert target.lower_bound < 0.2 and honest.lower_bound > target.lower_bound + 0.6


def crossing(reliable: list[bool], flaky: list[bool]) -> tuple[int | None, Reputation]:
    """The first task count after which the reliable agent ranks above the flaky one for good."""
    world = honest_world(1000)
    cheap = served("HF/f", "HF", [True] * 200, skill="ping", start=NOW - DAY)
    first: int | None = None
    rep = compute(world, SEED, PARAMS)
    for n in range(1, len(reliable) + 1):
        rep = compute([*world, *cheap, *served("HR/r", "HR", reliable[:n]), *served("HF/f", "HF", flaky[:n])],
                      SEED, PARAMS)
        ahead = rep.score("HR/r", SKILL).lower_bound > rep.score("HF/f", SKILL).lower_bound
        if ahead and first is None:
            first = n
        elif not ahead:
            first = None
    return first, rep


def test_agent_failing_30_percent_falls_below_a_reliable_one_within_100_tasks() -> None:
    flaky = [k % 10 not in (3, 6, 9) for k in range(100)]  # 3 failures in every 10 tasks, the first 3 succeed
    reliable = [k % 50 != 49 for k in range(100)]     # 2 failures in 100
    assert flaky.count(False) == 30 and reliable.count(False) == 2
    first, rep = crossing(reliable, flaky)
    assert first is not None and first <= 10  # from the 10th task on, and for good
    r, f = rep.score("HR/r", SKILL), rep.score("HF/f", SKILL)
    assert f.mean == pytest.approx(0.71, abs=0.03) and r.mean > 0.95
    # after 100 tasks the intervals do not overlap (each of the three non-pre-trusted callers' 20 receipts count
    # as at most 2 w / (1 - w) observations: the say limit)
    assert r.interval()[0] > 0.9 > 0.86 > f.interval()[1]
    # The 200 cheap 'ping' successes lift the pooled score, not the one ranked for 'translate'.
    assert rep.agent_score("HF/f").mean > 0.85 > f.mean


def test_ratings_inside_one_organisation_do_not_count() -> None:
    base = [*honest_world(), *HONEST_AGENT]
    padding = [Rating(f"HX/y{i % 7}", "HX", "HX/x", "HX", SKILL, True, NOW) for i in range(1000)]
    slander = [Rating("P0/a1", "P0", "P0/a2", "P0", SKILL, False, NOW) for _ in range(100)]
    clean, padded = compute(base, SEED, PARAMS), compute([*base, *padding, *slander], SEED, PARAMS)
    assert padded.receipts_same_org == 1100 and clean.receipts_same_org == 0
    assert padded.org_trust == clean.org_trust
    assert padded.score("HX/x", SKILL) == clean.score("HX/x", SKILL)
    assert padded.score("P0/a2", SKILL) == clean.score("P0/a2", SKILL)
    alone = compute([*padding, *honest_world()], SEED, PARAMS)
    assert "HX" not in alone.org_trust and alone.score("HX/x", SKILL).evidence == 0.0


def test_time_decay_halves_evidence_per_half_life() -> None:
    world = honest_world()
    fresh_receipts = served("HX/x", "HX", [True] * 20, start=NOW)
    old_receipts = served("HX/x", "HX", [True] * 20, start=NOW - PARAMS.half_life)
    fresh, old = compute([*world, *fresh_receipts], SEED, PARAMS), compute([*world, *old_receipts], SEED, PARAMS)
    for rep, receipts in ((fresh, fresh_receipts), (old, old_receipts)):
        # each receipt counts w(rater org) * 2^(-age / half_life)
        expected = sum(rep.rater_weight(r.rater_org) * 0.5 ** ((NOW - r.time) / PARAMS.half_life) for r in receipts)
        assert rep.score("HX/x", SKILL).successes == pytest.approx(expected, rel=1e-12)
    assert old_receipts[0].time == NOW - PARAMS.half_life
    assert old.score("HX/x", SKILL).successes < 0.55 * fresh.score("HX/x", SKILL).successes
    assert old.score("HX/x", SKILL).lower_bound < fresh.score("HX/x", SKILL).lower_bound - 0.1


def test_recent_failures_outweigh_old_successes() -> None:
    history = [*served("HT/t", "HT", [True] * 40, start=NOW - 365 * DAY), *served("HT/t", "HT", [False] * 10)]
    decayed = compute([*honest_world(), *history], SEED, PARAMS).score("HT/t", SKILL)
    timeless = compute([*honest_world(), *history], SEED, Params(now=NOW, half_life=1e12)).score("HT/t", SKILL)
    assert decayed.mean < 0.3 < 0.7 < timeless.mean


def test_future_dated_receipts_get_no_extra_weight() -> None:
    receipts = served("HX/x", "HX", [True] * 5, start=NOW + 100 * DAY)
    rep = compute(receipts, SEED, PARAMS)
    assert rep.score("HX/x", SKILL).successes == pytest.approx(sum(rep.rater_weight(r.rater_org) for r in receipts))
    assert rep.score("HX/x", SKILL).successes <= 5.0


def test_eigentrust_matches_the_closed_form() -> None:
    """Seed A trusts B, B trusts C, C trusts nobody (so teleports to A): x = a / (1 - (1-a)^3)."""
    trust, iterations, converged = eigentrust({("A", "B"): 3.0, ("B", "C"): 1.0, ("C", "A"): -2.0}, ["A"], 0.15)
    x = 0.15 / (1 - 0.85**3)
    assert converged and iterations < 200
    assert trust["A"] == pytest.approx(x, abs=1e-9)
    assert trust["B"] == pytest.approx(0.85 * x, abs=1e-9)
    assert trust["C"] == pytest.approx(0.85**2 * x, abs=1e-9)
    assert sum(trust.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        eigentrust({("A", "B"): 1.0}, [], 0.15)


def test_recompute_is_order_independent_up_to_rounding() -> None:
    ratings = [*honest_world(), *HONEST_AGENT, *ring(50, 300, one_org=False)]
    shuffled = list(ratings)
    random.Random(1).shuffle(shuffled)
    a, b = compute(ratings, SEED, PARAMS), compute(shuffled, SEED, PARAMS)
    assert a.org_trust.keys() == b.org_trust.keys()
    assert all(a.org_trust[o] == pytest.approx(b.org_trust[o], abs=1e-12) for o in a.org_trust)
    assert a.score("HX/x", SKILL).alpha == pytest.approx(b.score("HX/x", SKILL).alpha, rel=1e-12)


def test_result_carries_its_inputs() -> None:
    rep = compute([*honest_world(), *HONEST_AGENT], SEED, PARAMS)
    assert rep.params == PARAMS and rep.pretrusted == frozenset(SEED) and rep.converged
    assert rep.receipts_used == 2020
    assert all(rep.rater_weight(p) == 1.0 for p in SEED) and rep.rater_weight("nobody") == 0.0
    for org in HONEST[3:]:  # every honest organisation rated five others the seed knows: full history
        assert rep.history[org] == 1.0 and 0.0 < rep.rater_weight(org) == rep.standing[org] < 1.0
    score = rep.score("HX/x", SKILL)
    assert (score.alpha, score.beta) == (1.0 + score.successes, 1.0)


def customer_of(org: str, others: list[str]) -> list[Rating]:
    """``org`` as a real customer of one agent of each organisation in ``others``: its history as a judge."""
    return [Rating(f"{org}/c", org, f"{o}/a0", o, SKILL, True, NOW - 7200) for o in others]


def test_weights_are_relative_to_the_pretrusted_organisations() -> None:
    """An organisation that every seed uses more than anyone cannot shrink the seeds' say (it could: by the max)."""
    big = [Rating(f"{p}/a0", p, "B/b", "B", SKILL, True, NOW - i) for p in SEED for i in range(400)]
    rep = compute([*honest_world(), *HONEST_AGENT, *big, *customer_of("B", HONEST[3:8])], SEED, PARAMS)
    assert rep.org_trust["B"] > max(rep.org_trust[p] for p in SEED)  # more EigenTrust mass than any seed
    assert rep.standing["B"] == rep.rater_weight("B") == 1.0  # capped at the anchor's weight, not above
    assert all(rep.rater_weight(p) == 1.0 for p in SEED)
    # the honest agent served P0, P1, H3, H5, H8: the seeds' receipts count exactly as before B grew
    clean = compute([*honest_world(), *HONEST_AGENT], SEED, PARAMS)
    assert all(rep.rater_weight(p) == clean.rater_weight(p) for p in SEED)


def test_a_ring_of_fresh_organisations_launders_nothing() -> None:
    """X earned trust with 20 real jobs for P0; X and four fresh organisations then trade 200 fake receipts a pair."""
    earned = [Rating(f"P0/a{i % 5}", "P0", "X/x", "X", SKILL, True, NOW - i * 600) for i in range(20)]
    orgs = ["X", "Y1", "Y2", "Y3", "Y4"]
    fakes = [Rating(f"{a}/x", a, f"{b}/x", b, SKILL, True, NOW - i) for a in orgs for b in orgs if a != b
             for i in range(200)]
    base = [*honest_world(), *HONEST_AGENT, *earned]
    before, after = compute(base, SEED, PARAMS), compute([*base, *fakes], SEED, PARAMS)
    assert before.standing["X"] > 0.05  # real trust, on the seeds' scale
    assert after.org_trust["X"] == pytest.approx(before.org_trust["X"], rel=1e-9)  # nothing came back round
    assert all(after.org_trust[y] == 0.0 and after.rater_weight(y) == 0.0 for y in orgs[1:])
    assert after.history["X"] == 0.0  # it rated only organisations nobody else vouches for
    assert after.score("Y1/x", SKILL).evidence == 0.0
    # the same receipts without the history rule: the ring multiplies X's trust and the Ys gain a say
    ungated = compute([*base, *fakes], SEED, Params(now=NOW, min_history=0))
    assert sum(ungated.rater_weight(o) for o in orgs) > 2 * ungated.rater_weight("X") > 0


def test_history_is_the_least_fixed_point_from_the_seeds() -> None:
    edges = [("P", "A"), ("P", "B"), ("A", "B"), ("A", "C"), ("B", "C"), ("C", "D"), ("D", "C"), ("E", "F"),
             ("F", "E"), ("E", "A")]
    history = judges(edges, edges, ["P"], 2)
    # A rated B (P vouches) and C (B vouches, once B's word counts, which takes A's): a fixed point, not one pass
    assert history["P"] == history["A"] == 1.0
    assert history["B"] == 0.5  # it rated C only (A vouches)
    assert history["C"] == 0.0  # it rated only D, whom nobody else vouches for
    assert history["D"] == 0.5  # it rated C, whom A and B vouch for
    assert history["E"] == 0.5  # rated A (vouched by P); F is vouched for only by E
    assert history["F"] == 0.0  # rated only E, whom trust never reaches (nobody with history rates E)
    assert judges(edges, edges, ["P"], 0) == dict.fromkeys(history, 1.0)


def test_forward_edges_leave_no_cycle() -> None:
    edges = [("P", "A"), ("A", "B"), ("B", "A"), ("A", "C"), ("C", "P"), ("B", "D"), ("X", "Y")]
    assert forward_edges(edges, ["P"]) == [("P", "A"), ("A", "B"), ("A", "C"), ("B", "D")]


def test_two_colluders_with_history_amplify_each_other_unless_acyclic() -> None:
    """Two organisations that did real work and were real customers trade fake receipts: the cycle is the cost."""
    work = [Rating(f"{p}/a0", p, f"{o}/x", o, SKILL, True, NOW - i) for p, o in (("P0", "X"), ("P1", "Y"))
            for i in range(60)]
    history = [*customer_of("X", HONEST[3:8]), *customer_of("Y", HONEST[8:13])]
    fakes = [Rating(f"{a}/x", a, f"{b}/x", b, SKILL, True, NOW - i) for a, b in (("X", "Y"), ("Y", "X"))
             for i in range(50)]
    base = [*honest_world(), *HONEST_AGENT, *work, *history]
    for acyclic, grows in ((False, True), (True, False)):
        params = Params(now=NOW, acyclic=acyclic)
        before, after = compute(base, SEED, params), compute([*base, *fakes], SEED, params)
        earned = before.rater_weight("X") + before.rater_weight("Y")
        assert before.history["X"] == before.history["Y"] == 1.0 and earned > 0.2
        combined = after.rater_weight("X") + after.rater_weight("Y")
        assert (combined > 1.3 * earned) if grows else combined == pytest.approx(earned, rel=1e-9)


def test_a_failure_on_completed_work_counts_only_with_a_reason_and_then_a_tenth() -> None:
    echo = [Rating(f"P0/a{i % 5}", "P0", "E/e", "E", SKILL, True, NOW) for i in range(20)]

    def failures(n: int, **kind: bool) -> float:
        bad = [Rating("P1/a0", "P1", "E/e", "E", SKILL, False, NOW, **kind) for _ in range(n)]
        return compute([*honest_world(), *echo, *bad], SEED, PARAMS).score("E/e", SKILL).failures

    assert failures(10) == pytest.approx(10.0)  # the callee said it failed: a seed's word, in full
    assert failures(10, disputed=True) == 0.0  # the callee signed it as completed; no reason given
    assert failures(10, disputed=True, explained=True) == pytest.approx(10 * PARAMS.disputed_weight)
    assert compute([*honest_world(), *echo], SEED, PARAMS).score("E/e", SKILL).failures == 0.0


def test_one_raters_say_is_limited_by_its_weight() -> None:
    """A non-pre-trusted rater with weight w adds at most 2 w / (1 - w) observations; a seed, per_rater_cap."""
    w = 0.6
    for n in (1, 3, 10, 1000):
        # alone (no corroboration limit) and in a crowd
        successes, _ = combine([(float(n), 0.0, float(n), w, False)], Params(now=NOW, uncorroborated=math.inf))
        assert successes == pytest.approx(w * min(n, 2.0 / (1.0 - w)))
    assert combine([(1000.0, 0.0, 1000.0, 1.0, True)], PARAMS) == (PARAMS.per_rater_cap, 0.0)
    assert combine([(1000.0, 0.0, 1000.0, w, False)], Params(now=NOW, rater_say=math.inf,
                                                            uncorroborated=math.inf)) == (w * 50.0, 0.0)


def test_one_organisation_alone_does_not_lift_an_agent_over_the_bar() -> None:
    params = Params(now=NOW, rater_say=math.inf)  # a rater as strong as a seed, but not one
    alone, _ = combine([(50.0, 0.0, 50.0, 0.99, False)], params)
    assert alone == pytest.approx(PARAMS.uncorroborated)
    assert Score("z", SKILL, successes=alone).lower_bound < 0.5
    # corroborated by a second organisation, each counts up to what the other says plus the allowance
    both, _ = combine([(50.0, 0.0, 50.0, 0.99, False), (4.0, 0.0, 4.0, 0.99, False)], params)
    assert both == pytest.approx((4 * 0.99 + 3.0) + 4 * 0.99)
    # a seed's say is never cut for want of corroboration
    assert combine([(20.0, 0.0, 20.0, 1.0, True)], PARAMS) == (20.0, 0.0)


@pytest.mark.parametrize(("a", "b"), [(1.0, 1.0), (2.0, 2.0), (21.0, 1.0), (1.0, 7.5), (3.3, 40.0), (900.0, 120.0)])
def test_beta_quantiles_are_exact(a: float, b: float) -> None:
    for q in (0.001, 0.025, 0.3, 0.5, 0.975, 0.999):
        x = beta_ppf(q, a, b)
        assert betainc(a, b, x) == pytest.approx(q, abs=1e-12)
        if b == 1.0:
            assert x == pytest.approx(q ** (1 / a), abs=1e-12)  # I_x(a, 1) = x^a
        if a == 1.0:
            assert x == pytest.approx(1 - (1 - q) ** (1 / b), abs=1e-12)  # I_x(1, b) = 1 - (1-x)^b
    if a == b:
        assert beta_ppf(0.5, a, b) == pytest.approx(0.5, abs=1e-12)


def test_incomplete_beta_matches_numerical_integration() -> None:
    a, b, x, n = 4.5, 2.25, 0.6, 20_000
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)

    def pdf(u: float) -> float:
        return math.exp(log_norm + (a - 1) * math.log(u) + (b - 1) * math.log1p(-u)) if u > 0 else 0.0

    h = x / n
    simpson = h / 3 * (pdf(0) + pdf(x) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, n)))
    assert betainc(a, b, x) == pytest.approx(simpson, abs=1e-10)


def test_interval_brackets_the_mean_and_narrows_with_evidence() -> None:
    thin, thick = Score("x", SKILL, successes=7, failures=3), Score("x", SKILL, successes=700, failures=300)
    for s in (thin, thick):
        low, high = s.interval()
        assert 0 < low < s.mean < high < 1
    assert thick.interval()[1] - thick.interval()[0] < (thin.interval()[1] - thin.interval()[0]) / 5
    assert Score("x", SKILL).interval() == pytest.approx((0.025, 0.975))


def test_params_are_checked() -> None:
    for bad in ({"a": 0.0}, {"a": 1.5}, {"half_life": 0.0}, {"per_rater_cap": -1.0}, {"max_iterations": 0},
                {"min_history": -1}, {"disputed_weight": 1.5}, {"rater_say": 0.0}, {"uncorroborated": -1.0}):
        with pytest.raises(ValueError):
            Params(now=NOW, **bad)
    with pytest.raises(ValueError):
        beta_ppf(1.5, 1.0, 1.0)
