"""The previous reputation model (guildnet main before issue 18), kept only so benchmarks can compare against it.

Frozen: do not improve it. It is EigenTrust over organisations with every rater weighted by its trust divided by
the *largest* trust, every receipt counted at full weight (a disputed failure like an admitted one), and one
rater organisation's say about an agent capped at 50 observations. The power iteration and the beta maths
are the current module's (unchanged by the new model: ``eigentrust`` without ``follow`` is the old function).

Two options apply one direction of the issue at a time to this model, so bench/reputation_attacks.py can show
what each does on its own: ``relative`` divides by the pre-trusted organisations' mean trust instead of the
largest (capped at 1), ``concave`` takes the square root of each pair's net local trust before normalising.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable

from guildnet.protocols.reputation import Params, Rating, Reputation, Score, eigentrust

PER_RATER_CAP = 50.0


def compute(ratings: Iterable[Rating], pretrusted: Collection[str], now: float, *, relative: bool = False,
            concave: bool = False) -> Reputation:
    params = Params(now=now, min_history=0, disputed_weight=1.0, rater_say=math.inf, uncorroborated=math.inf)
    rate = math.log(2.0) / params.half_life
    slots: dict[tuple[str, str, str, str], list[float]] = {}
    used = same_org = 0
    for r in ratings:
        if r.rater_org == r.ratee_org:
            same_org += 1
            continue
        used += 1
        age = now - r.time
        d = math.exp(-rate * age) if age > 0 else 1.0
        slot = slots.setdefault((r.rater_org, r.ratee_org, r.ratee_agent, r.skill), [0.0, 0.0, 0.0])
        slot[0 if r.success else 1] += d
        slot[2] += 1
    local: dict[tuple[str, str], float] = {}
    for (rater, ratee, _, _), (s, f, _) in slots.items():
        local[rater, ratee] = local.get((rater, ratee), 0.0) + s - f
    if concave:
        local = {pair: math.sqrt(s) if s > 0 else s for pair, s in local.items()}
    trust, iterations, converged = eigentrust(local, pretrusted, params.a, tolerance=params.tolerance,
                                              max_iterations=params.max_iterations)
    seeds = frozenset(pretrusted)
    if relative:
        ref = sum(trust[o] for o in seeds) / len(seeds)
        weight = {org: 1.0 if org in seeds else min(1.0, value / ref) for org, value in trust.items()}
    else:
        top = max(trust.values())
        weight = {org: value / top for org, value in trust.items()}
    totals: dict[tuple[str, str], list[float]] = {}
    for (org, _, agent, skill), (s, f, n) in slots.items():
        w = weight[org] * min(1.0, PER_RATER_CAP / (s + f))
        total = totals.setdefault((agent, skill), [0.0, 0.0, 0.0])
        total[0] += w * s
        total[1] += w * f
        total[2] += n
    scores: dict[str, dict[str, Score]] = {}
    for (agent, skill), (s, f, n) in totals.items():
        scores.setdefault(agent, {})[skill] = Score(agent, skill, s, f, int(n))
    return Reputation(params=params, pretrusted=seeds, org_trust=trust, standing=weight,
                      history=dict.fromkeys(trust, 1.0), weights=weight, iterations=iterations, converged=converged,
                      receipts_used=used, receipts_same_org=same_org, scores=scores)
