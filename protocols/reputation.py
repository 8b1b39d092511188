"""Reputation from accepted receipts: trust between organisations, then a beta score per agent and skill.

Pure computation over plain records, no database, deterministic for a given input order: anyone holding the
transparency log (the accepted receipts, in log order) and the :class:`Params` recomputes the same numbers.
Each rule below answers an attack measured in ``bench/reputation_attacks.py`` (docs/reputation.md has the
tables): the previous model let a ring that earned a little real trust multiply it and spend it on a sybil.

1. **Evidence.** Each inter-organisation receipt counts ``d = 2^(-age / half_life)``. A failure the callee
   itself reported (its signed claim says failed, canceled or rejected) counts ``d``. A failure verdict on work
   the callee signed as completed, with the hashes the caller accepted, is the caller's word against the
   callee's (``disputed``): it counts ``disputed_weight * d`` with a reason, nothing without one. Receipts
   between agents of one organisation are dropped everywhere: an organisation cannot vouch for itself.
2. **Local trust between organisations.** ``s_ij`` = the decayed successes minus weighted failures of i's
   agents (the callers, who gave the verdicts) about j's; ``s_ij > 0`` is an edge i -> j.
3. **Judges.** An organisation's word counts (its receipts move scores, its edges pass trust on) in proportion
   to its history as a judge, ``min(1, n / min_history)``: ``n`` = the organisations it has rated that are
   pre-trusted, or that another organisation whose word counts and whom trust reaches also rates. Computed
   from the pre-trusted organisations outwards to the least fixed point. Fresh organisations that only rate
   each other have no such history, so a ring's fake receipts carry nothing, however many.
4. **EigenTrust** (Kamvar et al. 2003): ``t <- (1 - a) C^T t + a p``, ``p`` uniform over the pre-trusted
   organisations the operator names, ``c_ij`` = i's normalised positive local trust times i's history, the
   rest of i's trust (all of it with no edge) going back along ``p``. With ``acyclic``, only edges from an
   organisation at distance k from the pre-trusted ones to one at k + 1 carry trust: no cycle, so colluders
   who did pay for history cannot pass trust round to each other either; it costs honest peers the trust
   they pass each other (measured: see docs/reputation.md), so it is off by default.
5. **Standing** = trust / the pre-trusted organisations' mean trust, capped at 1 (pre-trusted: 1): relative to
   the anchor, not to the largest, so an organisation that grows cannot shrink the anchor's say. A rater's
   **weight** = standing * history.
6. **Beta reputation** (Jøsang & Ismail 2002) per (agent, skill): ``alpha = 1 + sum(w * successes)``,
   ``beta = 1 + sum(w * failures)`` over rater organisations. One organisation's receipts about one (agent,
   skill) saturate (scaled down, ratio kept) at ``per_rater_cap`` observations, and a non-pre-trusted one's
   at ``rater_say / (1 - w)``: its say is at most ``rater_say * w / (1 - w)`` observations, the limit of the
   paper's discounting operator (``rater_say`` = 2, its prior weight), while a few receipts count ``w`` each
   as before. What one non-pre-trusted organisation says beyond all the others together counts at most
   ``uncorroborated`` observations: one organisation's word alone does not lift an agent over a 0.5 bar.
7. **Interval.** The exact 95 % equal-tailed interval of Beta(alpha, beta) via the regularised incomplete beta
   function (continued fraction, Numerical Recipes §6.4) inverted by safeguarded Newton. Not the normal or
   Wilson approximation: evidence here is fractional and often near zero (newcomers, down-weighted raters),
   where the normal interval leaves [0, 1] and Wilson presumes integer Bernoulli counts. It costs tens of µs per
   score, so it is computed on demand (an API read, ranking a few candidates), never in the bulk recompute.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Rating:
    """One accepted receipt as the math sees it: who rated whom, for which skill, the verdict, and when.

    ``disputed``: a failure verdict although the callee signed the task as completed; ``explained``: the
    caller gave a reason. Both default to False, an admitted failure (or a success), so older callers that
    know only the verdict keep their meaning.
    """

    rater_agent: str
    rater_org: str
    ratee_agent: str
    ratee_org: str
    skill: str
    success: bool
    time: float  # unix seconds (the receipt's ended_at)
    disputed: bool = False
    explained: bool = False


@dataclass(frozen=True, slots=True)
class Params:
    """The model's parameters (the module docstring says what each does); ``math.inf`` turns a limit off."""

    now: float
    a: float = 0.15
    half_life: float = 90 * DAY
    per_rater_cap: float = 50.0
    min_history: int = 5
    disputed_weight: float = 0.1
    rater_say: float = 2.0
    uncorroborated: float = 3.0
    acyclic: bool = False
    tolerance: float = 1e-10
    max_iterations: int = 500

    def __post_init__(self) -> None:
        if not 0.0 < self.a <= 1.0:
            raise ValueError("EigenTrust a must be in (0, 1]")
        if not self.half_life > 0 or not self.per_rater_cap > 0 or not self.tolerance > 0:
            raise ValueError("half_life, per_rater_cap and tolerance must be positive")
        if not 0.0 <= self.disputed_weight <= 1.0 or self.min_history < 0:
            raise ValueError("disputed_weight must be in [0, 1] and min_history >= 0")
        if not self.rater_say > 0 or not self.uncorroborated >= 0:
            raise ValueError("rater_say must be positive and uncorroborated >= 0")
        if self.max_iterations < 1 or not math.isfinite(self.now):
            raise ValueError("max_iterations must be >= 1 and now finite")


@dataclass(frozen=True, slots=True)
class Score:
    """Beta(alpha, beta) reputation of one agent for one skill (``skill == "*"``: all skills pooled)."""

    agent: str
    skill: str
    successes: float = 0.0  # trust-weighted, decayed
    failures: float = 0.0
    receipts: int = 0  # inter-organisation receipts seen, whatever their weight

    @property
    def alpha(self) -> float:
        return 1.0 + self.successes

    @property
    def beta(self) -> float:
        return 1.0 + self.failures

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def evidence(self) -> float:
        return self.successes + self.failures

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        tail = (1.0 - level) / 2.0
        return beta_ppf(tail, self.alpha, self.beta), beta_ppf(1.0 - tail, self.alpha, self.beta)

    @property
    def lower_bound(self) -> float:
        """The 2.5 % quantile: what ranking should compare, so thin evidence cannot win."""
        return beta_ppf(0.025, self.alpha, self.beta)


@dataclass(frozen=True)
class Reputation:
    """The result of one recompute, with everything needed to check it.

    ``org_trust``: EigenTrust's stationary trust; ``standing``: trust relative to the pre-trusted organisations'
    mean, capped at 1; ``history``: each organisation's judge history in [0, 1]; ``weights``: standing times
    history, what a rater's receipts are weighed with.
    """

    params: Params
    pretrusted: frozenset[str]
    org_trust: Mapping[str, float]
    standing: Mapping[str, float]
    history: Mapping[str, float]
    weights: Mapping[str, float]
    iterations: int
    converged: bool
    receipts_used: int
    receipts_same_org: int
    scores: Mapping[str, Mapping[str, Score]] = field(repr=False)

    def rater_weight(self, org: str) -> float:
        return self.weights.get(org, 0.0)

    def score(self, agent: str, skill: str) -> Score:
        return self.scores.get(agent, {}).get(skill) or Score(agent=agent, skill=skill)

    def agent_score(self, agent: str) -> Score:
        """All skills pooled: for an overview, not for ranking (per-skill scores stop cheap-task padding)."""
        skills = self.scores.get(agent, {}).values()
        return Score(agent=agent, skill="*", successes=sum(s.successes for s in skills),
                     failures=sum(s.failures for s in skills), receipts=sum(s.receipts for s in skills))


def eigentrust(local: Mapping[tuple[str, str], float], pretrusted: Collection[str], a: float, *,
               follow: Mapping[str, float] | None = None, tolerance: float = 1e-10,
               max_iterations: int = 500) -> tuple[dict[str, float], int, bool]:
    """Global trust per organisation from net local trust ``s_ij``; returns (trust, iterations, converged).

    ``follow[i]`` (default 1) is the share of i's trust that follows its ratings; the rest, like all the trust
    of an organisation with no positive rating, goes back to the pre-trusted organisations.
    """
    if not pretrusted:
        raise ValueError("EigenTrust needs at least one pre-trusted organisation")
    orgs = sorted({o for pair in local for o in pair} | set(pretrusted))
    index = {org: i for i, org in enumerate(orgs)}
    n = len(orgs)
    rows: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for (rater, ratee), s in local.items():
        if s > 0:
            rows[index[rater]].append((index[ratee], s))
    passes = [1.0 if follow is None else follow.get(org, 0.0) for org in orgs]
    for i, row in enumerate(rows):
        if not row:
            passes[i] = 0.0
        total = sum(w for _, w in row)
        row[:] = [(j, passes[i] * w / total) for j, w in row]
    seeds = sorted(index[o] for o in set(pretrusted))
    share = 1.0 / len(seeds)
    t = [0.0] * n
    for i in seeds:
        t[i] = share
    keep = 1.0 - a
    iterations, converged = 0, False
    while iterations < max_iterations:
        iterations += 1
        new = [0.0] * n
        back = 0.0
        for i, row in enumerate(rows):
            ti = t[i]
            if ti:
                back += ti * (1.0 - passes[i])
                for j, w in row:
                    new[j] += ti * w
        teleport = (keep * back + a) * share
        new = [keep * x for x in new]
        for i in seeds:
            new[i] += teleport
        change = sum(abs(x - y) for x, y in zip(new, t, strict=True))
        t = new
        if change < tolerance:
            converged = True
            break
    return dict(zip(orgs, t, strict=True)), iterations, converged


def forward_edges(edges: Iterable[tuple[str, str]], pretrusted: Collection[str]) -> list[tuple[str, str]]:
    """The edges from an organisation at distance d from the pre-trusted ones to one at d + 1 (a DAG)."""
    edges = list(edges)
    out: dict[str, list[str]] = {}
    for rater, ratee in edges:
        out.setdefault(rater, []).append(ratee)
    level = dict.fromkeys(pretrusted, 0)
    frontier = sorted(level)
    while frontier:
        following = []
        for org in frontier:
            for ratee in out.get(org, ()):
                if ratee not in level:
                    level[ratee] = level[org] + 1
                    following.append(ratee)
        frontier = following
    return [(i, j) for i, j in edges if i in level and level.get(j) == level[i] + 1]


def judges(edges: Collection[tuple[str, str]], carrying: Collection[tuple[str, str]],
           pretrusted: Collection[str], min_history: int) -> dict[str, float]:
    """Each organisation's history as a judge in [0, 1] (step 3 of the module docstring).

    ``edges``: who rated whom positively; ``carrying``: the edges trust may flow along. An organisation counts
    for a rater when it is pre-trusted or another organisation vouches for it along a carrying edge, that one's
    word counting and trust reaching it. Monotone (more history only adds vouchers), so the loop from the
    pre-trusted organisations outwards ends, with the least fixed point.
    """
    seeds = set(pretrusted)
    orgs = {o for pair in edges for o in pair} | seeds
    if min_history <= 0:
        return dict.fromkeys(orgs, 1.0)
    history = {org: 1.0 if org in seeds else 0.0 for org in orgs}
    rated: dict[str, set[str]] = {}
    for rater, ratee in edges:
        if ratee != rater:
            rated.setdefault(rater, set()).add(ratee)
    out: dict[str, list[str]] = {}
    for rater, ratee in carrying:
        out.setdefault(rater, []).append(ratee)
    while True:
        reached, frontier = set(seeds), sorted(seeds)
        vouchers: dict[str, list[str]] = {}
        while frontier:
            following = []
            for org in frontier:
                if not history[org]:
                    continue
                for ratee in out.get(org, ()):
                    vouchers.setdefault(ratee, []).append(org)
                    if ratee not in reached:
                        reached.add(ratee)
                        following.append(ratee)
            frontier = following
        # who may count o: anyone if pre-trusted or vouched for by two or more, all but its voucher if by one
        sole = {o: v[0] if len(v) == 1 else None for o, v in vouchers.items()}
        changed = False
        for org in sorted(orgs - seeds):
            if history[org] == 1.0:
                continue
            known = sum(1 for o in rated.get(org, ()) if o in seeds or (o in sole and sole[o] != org))
            value = min(1.0, known / min_history)
            if value > history[org]:
                history[org] = value
                changed = True
        if not changed:
            return history


Opinion = tuple[float, float, float, float, bool]
"""One rater organisation about one (agent, skill): (successes, failures, volume, weight, pre-trusted).

``volume`` is the decayed receipt count (a disputed failure counts whole here, whatever its weight as a
failure), ``weight`` the rater's weight.
"""


def combine(opinions: Sequence[Opinion], params: Params) -> tuple[float, float]:
    """(successes, failures) of one agent and skill from its raters' opinions (step 6 of the module docstring).

    Shared by :func:`compute` and the registry explorer's replay of a score over time.
    """
    said: list[tuple[float, float, bool]] = []
    for successes, failures, volume, weight, anchor in opinions:
        cap = params.per_rater_cap
        if not anchor and weight < 1.0:
            cap = min(cap, params.rater_say / (1.0 - weight))
        scale = min(1.0, cap / volume) if volume > cap else 1.0
        said.append((weight * scale * successes, weight * scale * failures, anchor))
    heard = sum(s + f for s, f, _ in said)
    total_s = total_f = 0.0
    for s, f, anchor in said:
        own = s + f
        if not anchor and own > 0:
            allowed = heard - own + params.uncorroborated
            if own > allowed:
                s, f = s * allowed / own, f * allowed / own
        total_s += s
        total_f += f
    return total_s, total_f


def compute(ratings: Iterable[Rating], pretrusted: Collection[str], params: Params) -> Reputation:
    """Full recompute over every accepted receipt (see the module docstring for the steps)."""
    rate = math.log(2.0) / params.half_life
    now, exp, disputed = params.now, math.exp, params.disputed_weight
    # One slot per (rater org, ratee org, ratee agent, skill), in flat float lists rather than a list per slot:
    # a million small lists would make the cyclic garbage collector walk them over and over (measured: +40 %).
    slots: dict[tuple[str, str, str, str], int] = {}
    succ: list[float] = []
    fail: list[float] = []
    volume: list[float] = []
    count: list[int] = []
    used = same_org = 0
    for r in ratings:
        rater, ratee = r.rater_org, r.ratee_org
        if rater == ratee:
            same_org += 1
            continue
        used += 1
        age = now - r.time
        d = exp(-rate * age) if age > 0 else 1.0
        key = (rater, ratee, r.ratee_agent, r.skill)
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = len(count)
            succ.append(0.0)
            fail.append(0.0)
            volume.append(0.0)
            count.append(0)
        if r.success:
            succ[slot] += d
        elif not r.disputed:
            fail[slot] += d
        elif r.explained:
            fail[slot] += disputed * d
        volume[slot] += d
        count[slot] += 1
    local: dict[tuple[str, str], float] = {}
    for (rater, ratee, _, _), slot in slots.items():
        local[rater, ratee] = local.get((rater, ratee), 0.0) + succ[slot] - fail[slot]
    seeds = frozenset(pretrusted)
    edges = [pair for pair, s in local.items() if s > 0]
    carrying = forward_edges(edges, seeds) if params.acyclic else edges
    history = judges(edges, carrying, seeds, params.min_history)
    kept = set(carrying)
    trust, iterations, converged = eigentrust({pair: s for pair, s in local.items() if pair in kept}, seeds,
                                              params.a, follow=history, tolerance=params.tolerance,
                                              max_iterations=params.max_iterations)
    anchor = sum(trust[o] for o in seeds) / len(seeds)
    standing = {org: 1.0 if org in seeds else min(1.0, trust.get(org, 0.0) / anchor) for org in history}
    weights = {org: value * history[org] for org, value in standing.items()}
    groups: dict[tuple[str, str], list[int]] = {}
    for (_, _, agent, skill), slot in slots.items():
        groups.setdefault((agent, skill), []).append(slot)
    orgs = [key[0] for key in slots]
    scores: dict[str, dict[str, Score]] = {}
    for (agent, skill), members in groups.items():
        successes, failures = combine([(succ[i], fail[i], volume[i], weights.get(orgs[i], 0.0), orgs[i] in seeds)
                                       for i in members], params)
        scores.setdefault(agent, {})[skill] = Score(agent, skill, successes, failures, sum(count[i] for i in members))
    return Reputation(params=params, pretrusted=seeds, org_trust=trust, standing=standing, history=history,
                      weights=weights, iterations=iterations, converged=converged, receipts_used=used,
                      receipts_same_org=same_org, scores=scores)


_TINY = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), Numerical Recipes §6.4."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + aa / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) = P(X <= x) for X ~ Beta(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _normal_quantile(q: float) -> float:
    """Standard normal quantile to ~4.5e-4 (Abramowitz & Stegun 26.2.23): only Newton's starting point."""
    t = math.sqrt(-2.0 * math.log(min(q, 1.0 - q)))
    z = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t ** 3)
    return -z if q < 0.5 else z


def beta_ppf(q: float, a: float, b: float) -> float:
    """Quantile of Beta(a, b): Newton on I_x(a, b) = q, falling back to bisection when a step leaves the bracket."""
    if not 0.0 <= q <= 1.0 or a <= 0.0 or b <= 0.0:
        raise ValueError("need 0 <= q <= 1 and a, b > 0")
    if q in (0.0, 1.0):
        return q
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    mean = a / (a + b)
    guess = mean + _normal_quantile(q) * math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    lo, hi, x = 0.0, 1.0, guess if 0.0 < guess < 1.0 else mean
    for _ in range(200):
        f = betainc(a, b, x) - q
        if f == 0.0:
            return x
        if f < 0.0:
            lo = x
        else:
            hi = x
        density = math.exp(log_norm + (a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x))
        step = x - f / density if density > 0.0 else -1.0
        if abs(step - x) <= 1e-14 * x:
            return step if lo <= step <= hi else x
        if not lo < step < hi:
            step = (lo + hi) / 2.0
        if hi - lo <= 1e-15:
            return step
        x = step
    return x
