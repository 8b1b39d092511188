"""Reputation from accepted receipts: EigenTrust between organisations, then a beta score per agent and skill.

Pure computation over plain records, no database, deterministic for a given input order: anyone holding the
transparency log (the accepted receipts, in log order) and the :class:`Params` recomputes the same numbers.

1. **Local trust between organisations.** Each inter-organisation receipt adds ``+d`` (success) or ``-d``
   (failure) to ``s_ij`` (i = the caller's organisation, which gave the verdict; j = the callee's), where
   ``d = 2^(-age / half_life)``. Receipts between agents of one organisation are dropped everywhere: an
   organisation cannot vouch for itself. ``c_ij = max(s_ij, 0) / sum_k max(s_ik, 0)``.
2. **EigenTrust** (Kamvar et al. 2003): ``t <- (1 - a) C^T t + a p``, ``p`` uniform over the pre-trusted
   organisations the operator names, ``t(0) = p``; an organisation with no positive outgoing trust passes its
   mass along ``p``. Iterate until the L1 change is below ``tolerance`` (error shrinks as ``(1 - a)^k``).
   Trust reaches an organisation only along paths of satisfied callers starting at the seed, so a ring that
   only rates itself gets exactly 0.
3. **Beta reputation** (Jøsang & Ismail 2002) per (agent, skill): ``alpha = 1 + sum(w * d * success)``,
   ``beta = 1 + sum(w * d * failure)``, ``w`` = the rater organisation's trust divided by the largest trust (the
   most trusted organisation's word counts as one observation per receipt). One rater organisation's decayed
   receipts about one (agent, skill) saturate at ``per_rater_cap`` observations (scaled down, success ratio kept):
   without it a low-trust organisation could buy weight with volume; with it, a collective's total say about an
   agent is at most ``per_rater_cap * (its total trust / max trust)``, however many identities it makes.
4. **Interval.** The exact 95 % equal-tailed interval of Beta(alpha, beta) via the regularised incomplete beta
   function (continued fraction, Numerical Recipes §6.4) inverted by safeguarded Newton. Not the normal or
   Wilson approximation: evidence here is fractional and often near zero (newcomers, down-weighted raters),
   where the normal interval leaves [0, 1] and Wilson presumes integer Bernoulli counts. It costs tens of µs per
   score, so it is computed on demand (an API read, ranking a few candidates), never in the bulk recompute.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Rating:
    """One accepted receipt as the math sees it: who rated whom, for which skill, the verdict, and when."""

    rater_agent: str
    rater_org: str
    ratee_agent: str
    ratee_org: str
    skill: str
    success: bool
    time: float  # unix seconds (the receipt's ended_at)


@dataclass(frozen=True, slots=True)
class Params:
    now: float
    a: float = 0.15
    half_life: float = 90 * DAY
    per_rater_cap: float = 50.0
    tolerance: float = 1e-10
    max_iterations: int = 500

    def __post_init__(self) -> None:
        if not 0.0 < self.a <= 1.0:
            raise ValueError("EigenTrust a must be in (0, 1]")
        if not self.half_life > 0 or not self.per_rater_cap > 0 or not self.tolerance > 0:
            raise ValueError("half_life, per_rater_cap and tolerance must be positive")
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
    """The result of one recompute, with everything needed to check it."""

    params: Params
    pretrusted: frozenset[str]
    org_trust: Mapping[str, float]
    iterations: int
    converged: bool
    receipts_used: int
    receipts_same_org: int
    scores: Mapping[str, Mapping[str, Score]] = field(repr=False)

    def rater_weight(self, org: str) -> float:
        top = max(self.org_trust.values())
        return self.org_trust.get(org, 0.0) / top

    def score(self, agent: str, skill: str) -> Score:
        return self.scores.get(agent, {}).get(skill) or Score(agent=agent, skill=skill)

    def agent_score(self, agent: str) -> Score:
        """All skills pooled: for an overview, not for ranking (per-skill scores stop cheap-task padding)."""
        skills = self.scores.get(agent, {}).values()
        return Score(agent=agent, skill="*", successes=sum(s.successes for s in skills),
                     failures=sum(s.failures for s in skills), receipts=sum(s.receipts for s in skills))


def eigentrust(local: Mapping[tuple[str, str], float], pretrusted: Collection[str], a: float, *,
               tolerance: float = 1e-10, max_iterations: int = 500) -> tuple[dict[str, float], int, bool]:
    """Global trust per organisation from net local trust ``s_ij``; returns (trust, iterations, converged)."""
    if not pretrusted:
        raise ValueError("EigenTrust needs at least one pre-trusted organisation")
    orgs = sorted({o for pair in local for o in pair} | set(pretrusted))
    index = {org: i for i, org in enumerate(orgs)}
    n = len(orgs)
    rows: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for (rater, ratee), s in local.items():
        if s > 0:
            rows[index[rater]].append((index[ratee], s))
    for row in rows:
        total = sum(w for _, w in row)
        row[:] = [(j, w / total) for j, w in row]
    dangling = [i for i in range(n) if not rows[i]]
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
        for i, row in enumerate(rows):
            ti = t[i]
            if ti and row:
                for j, w in row:
                    new[j] += ti * w
        teleport = (keep * sum(t[i] for i in dangling) + a) * share
        new = [keep * x for x in new]
        for i in seeds:
            new[i] += teleport
        change = sum(abs(x - y) for x, y in zip(new, t, strict=True))
        t = new
        if change < tolerance:
            converged = True
            break
    return dict(zip(orgs, t, strict=True)), iterations, converged


def compute(ratings: Iterable[Rating], pretrusted: Collection[str], params: Params) -> Reputation:
    """Full recompute over every accepted receipt (see the module docstring for the three steps)."""
    rate = math.log(2.0) / params.half_life
    now, exp = params.now, math.exp
    # One slot per (rater org, ratee org, ratee agent, skill), in flat float lists rather than a list per slot:
    # a million small lists would make the cyclic garbage collector walk them over and over (measured: +40 %).
    slots: dict[tuple[str, str, str, str], int] = {}
    succ: list[float] = []
    fail: list[float] = []
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
            count.append(0)
        if r.success:
            succ[slot] += d
        else:
            fail[slot] += d
        count[slot] += 1
    local: dict[tuple[str, str], float] = {}
    for (rater, ratee, _, _), slot in slots.items():
        local[rater, ratee] = local.get((rater, ratee), 0.0) + succ[slot] - fail[slot]
    trust, iterations, converged = eigentrust(local, pretrusted, params.a, tolerance=params.tolerance,
                                              max_iterations=params.max_iterations)
    top = max(trust.values())
    weight = {org: value / top for org, value in trust.items()}
    totals: dict[tuple[str, str], int] = {}
    t_succ: list[float] = []
    t_fail: list[float] = []
    t_count: list[int] = []
    cap = params.per_rater_cap
    for (org, _, agent, skill), slot in slots.items():
        s_, f_ = succ[slot], fail[slot]
        w = weight[org]
        if s_ + f_ > cap:
            w *= cap / (s_ + f_)
        total = totals.get((agent, skill))
        if total is None:
            total = totals[agent, skill] = len(t_count)
            t_succ.append(0.0)
            t_fail.append(0.0)
            t_count.append(0)
        t_succ[total] += w * s_
        t_fail[total] += w * f_
        t_count[total] += count[slot]
    scores: dict[str, dict[str, Score]] = {}
    for (agent, skill), total in totals.items():
        scores.setdefault(agent, {})[skill] = Score(agent, skill, t_succ[total], t_fail[total], t_count[total])
    return Reputation(params=params, pretrusted=frozenset(pretrusted), org_trust=trust, iterations=iterations,
                      converged=converged, receipts_used=used, receipts_same_org=same_org, scores=scores)


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
