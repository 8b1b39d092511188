"""Attacks on reputation (issue 18), each a scenario with its parameters swept, on the new model beside the previous.

The world: three pre-trusted organisations P0-P2 and ten honest ones H0-H9 (five agents each) whose agents called
each other 2,000 times over 30 days (90 % success); three honest providers q0-q2 (prices 0.01-0.03) with 20
successes each, for P0, P1 and P2; an honest echo agent with 20 successes for P0. The attacker owns
organisation X (agent x0, price 0.005, which does real work), fresh organisations Y1.. (agent y, price 0) and Z
(agent z, price 0): y and z never did real work, they are the sybils. Every model's scores are ranked the way a
node ranks peers (node/delegation/ranking.py: the cheapest whose reputation lower bound clears the 0.5 bar first).

The issue's attacks:

* ``launder``: X does N real jobs for P0; X and K-1 fresh organisations trade R fake receipts per ordered pair.
* ``sybil``: after a two-organisation laundering (R = 50), z gets S fake successes from X and from Y1.
* ``badmouth``: one or two attacker organisations do N real jobs for each pre-trusted organisation (so their
  trust grows towards P0's) and, with ``judges``, were real customers of five honest organisations (the history
  the new model asks before an organisation's word counts); each countersigns B real, correct results of the
  echo agent as failures, with a reason or without.
* ``flood``: F receipts between 100 self-made organisations nobody trusts.

Beyond the issue, the attacker the new model leads to:

* ``collude``: one or two attacker organisations each do N real jobs for a pre-trusted organisation and J real
  jobs as a customer of honest organisations (so their word counts), trade R fake receipts with each other,
  then give z S fake successes each.

Conditions kept (the issue's "done when"), per scenario row: the sybils stay below the bar and rank below every
honest provider; a ring's combined rater weight is at most the trust its organisations earned by real work (their
standing before the fake receipts); the pre-trusted organisations keep their say; bad-mouthing by organisations
whose combined weight is below P0's leaves the echo agent above the bar; the flood moves no honest score.
Cost to the attacker: fake receipts (both halves signed by keys it holds) and real jobs (work others checked).

Models: ``v2`` (guildnet.protocols.reputation) and ``v1`` (bench/reputation_v1.py, the previous model), then,
to choose, v1 with one direction of the issue applied and v2 with one of its rules taken out (or ``acyclic`` on).

    python bench/reputation_attacks.py

Prints a table per scenario (v1 beside v2), the honest view and the ablations; writes
bench/results/reputation_attacks.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reputation_v1 import compute as compute_v1

from guildnet.node.delegation.ranking import Candidate, rank
from guildnet.protocols.reputation import DAY, Params, Rating, Reputation, compute

RESULTS = Path(__file__).with_name("results")
NOW = 1_800_000_000.0
SKILL = "translate"
BAR = 0.5
SEEDS = ("P0", "P1", "P2")
HONEST_ORGS = (*SEEDS, *(f"H{i}" for i in range(10)))
HONEST_PROVIDERS = {f"Q{i}/q{i}": 0.01 * (i + 1) for i in range(3)}
ECHO = "E/echo"
Model = Callable[[list[Rating]], Reputation]


def org_of(agent: str) -> str:
    return agent.split("/")[0]


def honest_world(receipts: int = 2000) -> list[Rating]:
    rng = random.Random(7)
    out = []
    for _ in range(receipts):
        rater, ratee = rng.sample(HONEST_ORGS, 2)
        out.append(Rating(f"{rater}/a{rng.randrange(5)}", rater, f"{ratee}/a{rng.randrange(5)}", ratee, SKILL,
                          rng.random() < 0.9, NOW - rng.random() * 30 * DAY))
    return out


def jobs(caller_org: str, agent: str, n: int, *, success: bool = True, disputed: bool = False,
         explained: bool = False, start: float = NOW) -> list[Rating]:
    """``n`` receipts from ``caller_org``'s agents about ``agent``, 10 minutes apart."""
    return [Rating(f"{caller_org}/a{i % 5}", caller_org, agent, org_of(agent), SKILL, success, start - i * 600,
                   disputed, explained) for i in range(n)]


WORLD = honest_world()
ESTABLISHED = sorted({r.ratee_agent for r in WORLD if r.ratee_org.startswith("H")})
HONEST = [r for i, agent in enumerate(HONEST_PROVIDERS) for r in jobs(SEEDS[i], agent, 20)] + jobs("P0", ECHO, 20)


def customer(org: str, j: int) -> list[Rating]:
    """``org`` as a real customer of ``j`` honest agents (one job each), one organisation after another."""
    agents = sorted(ESTABLISHED, key=lambda a: (a.split("/")[1], a))[:j]
    return [Rating(f"{org}/a0", org, a, org_of(a), SKILL, True, NOW - 3600 - i) for i, a in enumerate(agents)]


def ring(orgs: Sequence[str], per_pair: int) -> list[Rating]:
    agents = {org: f"{org}/x0" if org == "X" else f"{org}/y" for org in orgs}
    return [r for a in orgs for b in orgs if a != b for r in jobs(a, agents[b], per_pair, start=NOW - 60)]


def strip_disputes(ratings: Iterable[Rating]) -> list[Rating]:
    return [replace(r, disputed=False) if r.disputed else r for r in ratings]


MODELS: dict[str, Model] = {
    "v1": lambda rs: compute_v1(rs, SEEDS, NOW),
    "v2": lambda rs: compute(rs, SEEDS, Params(now=NOW)),
}
ABLATIONS: dict[str, Model] = {
    "v1 + relative weights": lambda rs: compute_v1(rs, SEEDS, NOW, relative=True),
    "v1 + concave pair trust": lambda rs: compute_v1(rs, SEEDS, NOW, concave=True),
    "v1 + dispute rule": lambda rs: compute_v1([r for r in rs if not r.disputed or r.explained], SEEDS, NOW),
    "v2 - history gate": lambda rs: compute(rs, SEEDS, Params(now=NOW, min_history=0)),
    "v2 - say limit": lambda rs: compute(rs, SEEDS, Params(now=NOW, rater_say=math.inf)),
    "v2 - corroboration": lambda rs: compute(rs, SEEDS, Params(now=NOW, uncorroborated=math.inf)),
    "v2 - dispute rule": lambda rs: compute(strip_disputes(rs), SEEDS, Params(now=NOW)),
    "v2 + acyclic": lambda rs: compute(rs, SEEDS, Params(now=NOW, acyclic=True)),
}


@dataclass(frozen=True)
class Outcome:
    """What one model made of one scenario row, and which of the issue's conditions it kept."""

    values: dict[str, Any]
    kept: dict[str, bool]


def weight(rep: Reputation, orgs: Iterable[str]) -> float:
    return sum(rep.rater_weight(o) for o in orgs)


def standing(rep: Reputation, orgs: Iterable[str]) -> float:
    """The trust ``orgs`` hold on the model's scale, whether or not their word counts yet."""
    return sum(rep.standing.get(o, 0.0) for o in orgs)


def sybil_outcome(rep: Reputation, sybils: list[str], extra: dict[str, float]) -> Outcome:
    """The best placed agent with no real work: its rank, score and lower bound, beside the honest providers."""
    prices = {**HONEST_PROVIDERS, **extra, **dict.fromkeys(sybils, 0.0)}
    candidates = [Candidate(agent_id=a, name=a, organisation=org_of(a), endpoint="", live=True,
                            reputation_lower=rep.score(a, SKILL).lower_bound, reputation_score=rep.score(a, SKILL).mean,
                            evidence=rep.score(a, SKILL).evidence, price=price) for a, price in prices.items()]
    ranks = {r.candidate.agent_id: r.rank for r in rank(candidates, min_reputation=BAR).ranked}
    best = min(sybils, key=lambda a: (ranks[a], -rep.score(a, SKILL).lower_bound))
    score = rep.score(best, SKILL)
    values = {"sybil_rank": ranks[best], "sybil_score": score.mean, "sybil_lower": score.lower_bound,
              "honest_lower_min": min(rep.score(a, SKILL).lower_bound for a in HONEST_PROVIDERS)}
    return Outcome(values, {"sybil below bar": score.lower_bound < BAR,
                            "sybil ranks below honest": ranks[best] > max(ranks[a] for a in HONEST_PROVIDERS)})


def launder(model: Model, n: int, k: int, r: int) -> Outcome:
    orgs = ["X", *(f"Y{i}" for i in range(1, k))]
    base = [*WORLD, *HONEST, *jobs("P0", "X/x0", n)]
    before, after = model(base), model([*base, *ring(orgs, r)])
    earned, combined = standing(before, ["X"]), weight(after, orgs)
    anchor_before, anchor = min(before.rater_weight(p) for p in SEEDS), min(after.rater_weight(p) for p in SEEDS)
    out = sybil_outcome(after, [f"{o}/y" for o in orgs[1:]], {"X/x0": 0.005})
    out.values.update(earned=earned, ring_weight=combined, amplification=combined / earned, p_weight=anchor)
    out.kept.update({"no amplification": combined <= earned + 1e-9, "anchor keeps its say": anchor >= anchor_before})
    return out


def sybil(model: Model, n: int, s: int) -> Outcome:
    base = [*WORLD, *HONEST, *jobs("P0", "X/x0", n), *ring(["X", "Y1"], 50)]
    return sybil_outcome(model([*base, *jobs("X", "Z/z", s), *jobs("Y1", "Z/z", s)]), ["Y1/y", "Z/z"],
                         {"X/x0": 0.005})


def badmouth(model: Model, attackers: int, n: int, judges: bool, b: int, explained: bool) -> Outcome:
    orgs = ["X", "Y1"][:attackers]
    base = [*WORLD, *HONEST, *(r for o in orgs for p in SEEDS for r in jobs(p, f"{o}/a", n))]
    if judges:
        base += [r for o in orgs for r in customer(o, 5)]
    was = model(base).score(ECHO, SKILL)
    rep = model([*base, *(r for o in orgs for r in jobs(o, ECHO, b, success=False, disputed=True,
                                                         explained=explained, start=NOW - 30))])
    combined, p, echo = weight(rep, orgs), rep.rater_weight("P0"), rep.score(ECHO, SKILL)
    values = {"attackers_weight": combined, "p_weight": p, "echo_before": was.mean, "lower_before": was.lower_bound,
              "echo_after": echo.mean, "lower_after": echo.lower_bound}
    return Outcome(values, {"echo above bar": combined >= p or echo.lower_bound >= BAR})


def flood(model: Model, f: int) -> Outcome:
    rng = random.Random(11)
    fakes = []
    for i in range(f):
        a, b = rng.sample(range(100), 2)
        fakes.append(Rating(f"F{a}/f", f"F{a}", f"F{b}/f", f"F{b}", SKILL, True, NOW - i))
    base = [*WORLD, *HONEST]
    clean = model(base)
    started = time.perf_counter()
    rep = model([*base, *fakes])
    seconds = time.perf_counter() - started
    moved = max(abs(rep.score(a, SKILL).lower_bound - clean.score(a, SKILL).lower_bound)
                for a in [*HONEST_PROVIDERS, *ESTABLISHED])
    values = {"moved": moved, "flood_weight": weight(rep, (f"F{i}" for i in range(100))), "seconds": seconds}
    return Outcome(values, {"flood adds nothing": moved < 1e-9})


def collude(model: Model, orgs: int, n: int, j: int, r: int, s: int) -> Outcome:
    names = ["X", "Y1"][:orgs]
    agents = {"X": "X/x0", "Y1": "Y1/y"}
    base = [*WORLD, *HONEST, *(x for i, o in enumerate(names) for x in (*jobs(SEEDS[i], agents[o], n),
                                                                        *customer(o, j)))]
    before = model(base)
    rep = model([*base, *ring(names, r), *(x for o in names for x in jobs(o, "Z/z", s))])
    earned, combined = standing(before, names), weight(rep, names)
    out = sybil_outcome(rep, ["Z/z"], {agents[o]: 0.005 for o in names})
    out.values.update(earned=earned, ring_weight=combined, amplification=combined / earned)
    if orgs > 1:
        out.kept["no amplification"] = combined <= earned + 1e-9
    return out


def grid(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        points = [{**p, name: v} for p in points for v in values]
    return points


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[..., Outcome]
    sweep: list[dict[str, Any]]
    columns: list[str]
    cost: Callable[[dict[str, Any]], tuple[int, int]]
    """(fake receipts, real jobs) the attacker spends on one row."""
    in_issue: bool = True


SCENARIOS = [
    Scenario("launder", launder, grid(n=[20, 60, 200], k=[2, 5], r=[50, 500]),
             ["earned", "ring_weight", "amplification", "p_weight", "sybil_lower"],
             lambda p: (p["k"] * (p["k"] - 1) * p["r"], p["n"])),
    Scenario("sybil", sybil, grid(n=[20, 60, 200], s=[7, 50, 200]),
             ["sybil_rank", "sybil_score", "sybil_lower", "honest_lower_min"],
             lambda p: (100 + 2 * p["s"], p["n"])),
    Scenario("badmouth", badmouth, grid(attackers=[1, 2], n=[5, 20, 80], judges=[False, True], b=[50, 200],
                                       explained=[False, True]),
             ["attackers_weight", "lower_before", "echo_after", "lower_after"],
             lambda p: (0, p["attackers"] * (3 * p["n"] + p["b"] + (5 if p["judges"] else 0)))),
    Scenario("flood", flood, grid(f=[3000, 30000]), ["moved", "flood_weight", "seconds"], lambda p: (p["f"], 0)),
    Scenario("collude", collude, grid(orgs=[1, 2], n=[20, 60, 200, 1000], j=[5, 20], r=[50], s=[50]),
             ["earned", "ring_weight", "amplification", "sybil_rank", "sybil_lower"],
             lambda p: (p["orgs"] * (p["orgs"] - 1) * p["r"] + p["orgs"] * p["s"], p["orgs"] * (p["n"] + p["j"])),
             in_issue=False),
]


LABELS = {"sybil below bar": "sybil", "sybil ranks below honest": "sybil", "no amplification": "amplification",
          "anchor keeps its say": "anchor", "echo above bar": "echo", "flood adds nothing": "flood"}
"""The summary's columns: conditions grouped (a sybil clearing the bar is, at price 0, also ranked first)."""


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def render(head: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in [head, *body])


def kept(conditions: dict[str, bool]) -> str:
    return "all" if all(conditions.values()) else "NOT " + ", ".join(c for c, ok in conditions.items() if not ok)


def table(scenario: Scenario, rows: list[dict[str, Any]]) -> str:
    params = list(scenario.sweep[0])
    head = [*params, "fake", "real", *(f"{m}:{c}" for m in MODELS for c in scenario.columns),
            *(f"{m} kept" for m in MODELS)]
    body = [[*(fmt(row["params"][p]) for p in params), fmt(row["fake_receipts"]), fmt(row["real_jobs"]),
             *(fmt(row["models"][m]["values"][c]) for m in MODELS for c in scenario.columns),
             *(kept(row["models"][m]["kept"]) for m in MODELS)] for row in rows]
    title = "" if scenario.in_issue else " (beyond the issue)"
    return f"== {scenario.name}{title} ==\n{render(head, body)}"


def crossing(model: Model) -> int | None:
    """Honest behaviour: the task after which a reliable agent ranks above a 30 %-failing one for good."""
    callers = ["P0", "H3", "H5", "P1", "H8"]

    def served(agent: str, outcomes: list[bool]) -> list[Rating]:
        return [Rating(f"{callers[i % 5]}/a{i % 3}", callers[i % 5], agent, org_of(agent), SKILL, ok, NOW - i * 600)
                for i, ok in enumerate(outcomes)]

    flaky = [k % 10 not in (3, 6, 9) for k in range(100)]
    reliable = [k % 50 != 49 for k in range(100)]
    first: int | None = None
    for n in range(1, 101):
        rep = model([*WORLD, *served("HR/r", reliable[:n]), *served("HF/f", flaky[:n])])
        ahead = rep.score("HR/r", SKILL).lower_bound > rep.score("HF/f", SKILL).lower_bound
        first = (first or n) if ahead else None
    return first


def honest_view(model: Model) -> dict[str, Any]:
    """What the model makes of honest work alone: the honest organisations' agents (90 % success) and q0-q2."""
    rep = model([*WORLD, *HONEST])
    lowers = sorted(rep.score(a, SKILL).lower_bound for a in ESTABLISHED)
    return {"median_lower": lowers[len(lowers) // 2], "clearing_bar": sum(x >= BAR for x in lowers) / len(lowers),
            "providers_lower_min": min(rep.score(a, SKILL).lower_bound for a in HONEST_PROVIDERS),
            "reliable_ahead_from_task": crossing(model)}


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    every = {**MODELS, **ABLATIONS}
    report: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                                          "processor": platform.processor() or platform.machine()},
                              "bar": BAR, "scenarios": {}, "honest": {}, "rows_failed": {}}
    rows_failed: dict[str, dict[str, int]] = {name: {} for name in every}
    checked: dict[str, dict[str, int]] = {name: {} for name in every}
    for scenario in SCENARIOS:
        rows = []
        for p in scenario.sweep:
            fake, real = scenario.cost(p)
            results = {}
            for name, model in every.items():
                outcome = scenario.run(model, **p)
                results[name] = {"values": outcome.values, "kept": outcome.kept}
                for label in sorted({LABELS[c] for c in outcome.kept}):
                    column = f"{scenario.name}{'' if scenario.in_issue else '*'} {label}"
                    checked[name][column] = checked[name].get(column, 0) + 1
                    failed = any(not ok for c, ok in outcome.kept.items() if LABELS[c] == label)
                    rows_failed[name][column] = rows_failed[name].get(column, 0) + failed
            rows.append({"params": p, "fake_receipts": fake, "real_jobs": real, "models": results})
        report["scenarios"][scenario.name] = rows
        print(table(scenario, rows), end="\n\n")
    report["honest"] = {name: honest_view(model) for name, model in every.items()}
    report["rows_failed"], report["rows_checked"] = rows_failed, checked
    columns = list(checked["v2"])
    head = ["model", "honest median lower", "honest clearing bar", "reliable ahead from task", *columns]
    body = [[name, fmt(h["median_lower"]), f"{h['clearing_bar']:.0%}", fmt(h["reliable_ahead_from_task"]),
             *(f"{rows_failed[name][c]}/{checked[name][c]}" for c in columns)] for name, h in report["honest"].items()]
    print("== honest behaviour, and scenario rows where a condition failed (* beyond the issue) ==")
    print(render(head, body))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reputation_attacks.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
