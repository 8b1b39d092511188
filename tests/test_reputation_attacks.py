"""The attacks of issue 18, as bench/reputation_attacks.py sweeps them, checked against the model the registry runs.

The benchmark's own scenario code runs here (imported the way tests/test_load.py imports benchmarks), so what the
benchmark reports and what CI checks cannot drift apart. Each test also checks the previous model (the frozen
bench/reputation_v1.py) fails where the new one holds, so a scenario that stopped attacking anything would show.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from test_load import bench_module

from guildnet.protocols.reputation import Params, compute

attacks = bench_module("reputation_attacks")


def run(scenario_name: str, model: Any, **only: Any) -> list[tuple[dict[str, Any], Any]]:
    """(parameters, outcome) of every row of a scenario's sweep (those matching ``only``)."""
    scenario = next(s for s in attacks.SCENARIOS if s.name == scenario_name)
    return [(p, scenario.run(model, **p)) for p in scenario.sweep if all(p[k] == v for k, v in only.items())]


def failed(rows: list[tuple[dict[str, Any], Any]]) -> list[dict[str, Any]]:
    return [p for p, outcome in rows if not all(outcome.kept.values())]


@pytest.mark.parametrize("scenario", ["launder", "sybil", "badmouth", "flood"])
def test_every_row_of_the_issues_attacks_holds(scenario: str) -> None:
    new, old = run(scenario, attacks.MODELS["v2"]), run(scenario, attacks.MODELS["v1"])
    assert failed(new) == []
    # the previous model falls to every laundering and sybil row, and to bad-mouthing by trusted organisations
    expected_old = {"launder": len(old), "sybil": len(old), "badmouth": 24, "flood": 0}[scenario]
    assert len(failed(old)) == expected_old


def test_what_the_laundering_ring_holds() -> None:
    for _, outcome in run("launder", attacks.MODELS["v2"]):
        values = outcome.values
        assert values["ring_weight"] == 0.0 < values["earned"]  # fresh organisations' word counts for nothing
        assert values["p_weight"] == 1.0 and values["sybil_lower"] == pytest.approx(0.025)  # Beta(1, 1) prior
    old = dict((p["n"], o.values["amplification"]) for p, o in run("launder", attacks.MODELS["v1"], k=2, r=50))
    assert old[20] == pytest.approx(6.667, abs=1e-3)  # 1 / a: the fresh organisation's trust comes from X's alone


def test_each_rule_is_what_stops_its_attack() -> None:
    """Take one rule out and the attack it answers gets through again (the benchmark's ablations)."""
    ablations = attacks.ABLATIONS
    assert len(failed(run("launder", ablations["v2 - history gate"], r=50))) == 6
    # a bad-mouther trusted almost as much as P0 (weight 0.95), whose failures all count as admitted ones
    assert len(failed(run("badmouth", ablations["v2 - dispute rule"]))) == 4
    assert len(failed(run("badmouth", ablations["v2 - dispute rule"], attackers=1, n=80, judges=True))) == 4
    # colluders who paid for their word: the say limit and the corroboration rule each stop one of the rows
    # the other lets through
    def sybil_rows(model: Any) -> int:
        return sum(not o.kept["sybil below bar"] for _, o in run("collude", model, j=5))

    assert sybil_rows(attacks.MODELS["v2"]) == 2
    assert sybil_rows(ablations["v2 - say limit"]) == 4
    assert sybil_rows(ablations["v2 - corroboration"]) == 3


def test_what_is_left_two_colluders_who_paid_in_real_work() -> None:
    """Beyond the issue, and stated in docs/reputation.md: two organisations that each did N real jobs for a seed
    and five as customers amplify each other (EigenTrust's cycle) and, from N = 200 each, can lift a sybil.
    ``acyclic`` removes the amplification; this pins the numbers the documentation quotes."""
    rows = {(p["orgs"], p["n"]): o for p, o in run("collude", attacks.MODELS["v2"], j=5)}
    assert all(rows[1, n].kept["sybil below bar"] for n in (20, 60, 200, 1000))
    assert [rows[2, n].kept["sybil below bar"] for n in (20, 60, 200, 1000)] == [True, True, False, False]
    assert all(1.3 < rows[2, n].values["amplification"] < 1.8 for n in (20, 60, 200, 1000))
    acyclic = {p["n"]: o for p, o in run("collude", attacks.ABLATIONS["v2 + acyclic"], orgs=2, j=5)}
    assert all(o.kept["no amplification"] for o in acyclic.values())


def test_honest_behaviour_keeps_its_standing() -> None:
    new, old = attacks.honest_view(attacks.MODELS["v2"]), attacks.honest_view(attacks.MODELS["v1"])
    assert new["reliable_ahead_from_task"] <= old["reliable_ahead_from_task"]
    assert new["clearing_bar"] >= old["clearing_bar"] and new["median_lower"] >= old["median_lower"] - 0.01
    assert new["providers_lower_min"] >= old["providers_lower_min"]


def test_the_benchmark_models_are_the_registrys() -> None:
    """v2 in the benchmark is exactly protocols.reputation.compute with default parameters."""
    ratings = [*attacks.WORLD, *attacks.HONEST]
    bench = attacks.MODELS["v2"](ratings)
    direct = compute(ratings, attacks.SEEDS, Params(now=attacks.NOW))
    assert bench.weights == direct.weights and bench.score(attacks.ECHO, attacks.SKILL) == direct.score(
        attacks.ECHO, attacks.SKILL)
    assert not math.isclose(attacks.MODELS["v1"](ratings).rater_weight("P0"), 1.0)  # v1 divides by the largest
