"""Reputation in the running registry: a scheduled full recompute in a worker process, served from memory.

The math is :mod:`guildnet.protocols.reputation` (EigenTrust over organisations, then trust-weighted beta scores
per agent and skill). This module feeds it the accepted receipts and serves the result:

* **Schedule, not per receipt.** Every ``interval`` seconds, if the log grew since the last result (or that
  result is older than :data:`MAX_AGE`, so time decay moves on), one full recompute runs. Trust is global
  (one receipt can move every organisation's weight), so an incremental update would still be a recompute.
* **Off the event loop.** The recompute runs in a separate process (``spawn``), which reads the ``receipts``
  table itself in one read snapshot and returns the result: measured on this machine's class (pure Python,
  ``bench/reputation.py``) 7-13 s for 100k agents / 1M receipts plus ~6 s decoding their ~195k failures, ~0.85
  GB peak, and the registry keeps answering meanwhile on its own core. Until the first result exists the API
  answers 503.
* **Reproducible.** A result names the log size it covers (every receipt with a smaller log index, none
  after) and its parameters, so anyone holding the log can recompute it.
* **Failures read from the log.** The model weighs a failure by what the callee signed (a disputed failure:
  the claim says completed) and whether the caller gave a reason; the ``receipts`` table keeps neither, so for
  failures (only) the logged signed write is decoded, not re-verified: the registry verified it on admission.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, make_url

from guildnet.protocols.jws import b64url_decode
from guildnet.protocols.reputation import Params, Rating, Reputation, Score, compute

log = logging.getLogger(__name__)

MAX_AGE = 3600.0
LISTED_RECEIPTS = 100
_RECEIPTS = ("SELECT r.caller, r.caller_org, r.callee, r.callee_org, r.skill, r.success, r.ended_at, "
             "CASE WHEN r.success THEN NULL ELSE l.data END FROM receipts r "
             "LEFT JOIN log_entries l ON l.idx = r.log_index WHERE r.log_index < {size} ORDER BY r.log_index")
_LOG_SIZE = "SELECT COALESCE(MAX(idx), -1) + 1 FROM log_entries"


@dataclass(frozen=True)
class Snapshot:
    reputation: Reputation
    log_size: int
    receipts: int
    computed_at: float
    seconds: float


def _payload(token: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(b64url_decode(token.split(".")[1]))
    return body


def failure_kind(leaf: str) -> tuple[bool, bool]:
    """(disputed, explained) of a logged failure receipt: did the callee sign its work as completed, and did the
    caller give a reason. ``leaf`` is the log entry's data: ``{"jws": signed write {"receipt": verdict token
    {"receipt": claim token, "reason"?}}}``."""
    verdict = _payload(_payload(json.loads(leaf)["jws"])["receipt"])
    return _payload(verdict["receipt"])["status"] == "completed", bool(verdict.get("reason"))


def _ratings(rows: Sequence[Sequence[Any]]) -> list[Rating]:
    out = []
    for r in rows:
        success = bool(r[5])
        disputed, explained = (False, False) if success else failure_kind(r[7])
        out.append(Rating(r[0], r[1], r[2], r[3], r[4], success, float(r[6]), disputed, explained))
    return out


def _load_sqlite(path: str) -> tuple[int, list[Rating]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")  # one read snapshot for the size and the receipts
        size = int(conn.execute(_LOG_SIZE).fetchone()[0])
        return size, _ratings(conn.execute(_RECEIPTS.format(size=size)).fetchall())
    finally:
        conn.close()


def _load_postgres(dsn: str) -> tuple[int, list[Rating]]:
    import asyncpg

    async def load() -> tuple[int, list[Rating]]:
        conn = await asyncpg.connect(dsn)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                size = int(await conn.fetchval(_LOG_SIZE))
                return size, _ratings(await conn.fetch(_RECEIPTS.format(size=size)))
        finally:
            await conn.close()

    return asyncio.run(load())


def recompute_from_database(db_url: str, pretrusted: Sequence[str], now: float) -> Snapshot:
    """The worker process's job: read every accepted receipt below the current log size, compute."""
    started = time.perf_counter()
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("reputation needs a SQLite file (an in-memory database is not shared with workers)")
        size, ratings = _load_sqlite(url.database)
    else:
        size, ratings = _load_postgres(url.set(drivername="postgresql").render_as_string(hide_password=False))
    reputation = compute(ratings, pretrusted, Params(now=now))
    return Snapshot(reputation, size, len(ratings), now, time.perf_counter() - started)


class ReputationService:
    """Owns the worker process and the latest :class:`Snapshot`."""

    def __init__(self, db_url: str, pretrusted: Sequence[str], *, interval: float,
                 log_size: Callable[[], Awaitable[int]], clock: Callable[[], float] = time.time) -> None:
        self.db_url = db_url
        self.pretrusted = tuple(dict.fromkeys(pretrusted))
        self.interval = interval
        self.clock = clock
        self._log_size = log_size
        self.current: Snapshot | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def admission(self) -> Callable[[str, str], str | None] | None:
        """Which receipts may enter the log: those whose caller's organisation has trust in the current
        snapshot, or whose callee's organisation is pre-trusted (a pre-trusted organisation's agent signed the
        work, so a newcomer can earn a history by calling it). A receipt from an organisation nobody trusted
        would count for nothing, and the log keeps it for ever: it is refused, so organisations that trade
        receipts among themselves add nothing to the log. Without pre-trusted organisations no trust is
        computed and every receipt is admitted (bounded by the write rate limits)."""
        if not self.pretrusted:
            return None
        pretrusted = frozenset(self.pretrusted)
        trust = self.current.reputation.org_trust if self.current is not None else {}

        def admit(caller_org: str, callee_org: str) -> str | None:
            if caller_org in pretrusted or callee_org in pretrusted or trust.get(caller_org, 0.0) > 0.0:
                return None
            return ("the caller's organisation has no trust here yet (no trusted organisation has rated its "
                    "agents), so its receipts would count for nothing and are not logged; receipts for work by "
                    "a pre-trusted organisation's agents are admitted")

        return admit

    async def start(self) -> None:
        if self.pretrusted:
            self._task = asyncio.create_task(self._loop(), name="guildnet-reputation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("reputation recompute failed; keeping the previous result")
            await asyncio.sleep(self.interval)

    async def refresh(self, *, force: bool = False) -> Snapshot | None:
        """Recompute if the log grew (or the result is stale, or ``force``); return the current result."""
        if not self.pretrusted:
            return None
        async with self._lock:
            current = self.current
            if not force and current is not None and self.clock() - current.computed_at < MAX_AGE:
                if await self._log_size() == current.log_size:
                    return current
            if self._pool is None:
                self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            snapshot = await asyncio.get_running_loop().run_in_executor(
                self._pool, recompute_from_database, self.db_url, self.pretrusted, self.clock())
            self.current = snapshot
            log.info("reputation recomputed: %d receipts, log size %d, %.2f s", snapshot.receipts,
                     snapshot.log_size, snapshot.seconds)
            return snapshot


def inputs_query(agent: str, skill: str | None, snapshot: Snapshot) -> Callable[[Connection], tuple[Any, Any]]:
    """The receipts behind one score (the newest :data:`LISTED_RECEIPTS`) and the per-rater totals."""
    size = snapshot.log_size
    where = "callee = :agent AND log_index < :size" + (" AND skill = :skill" if skill else "")
    params = {"agent": agent, "size": size, "skill": skill, "limit": LISTED_RECEIPTS}
    listed = text(f"SELECT receipt_id, log_index, caller_org, success FROM receipts WHERE {where} "
                  "ORDER BY log_index DESC LIMIT :limit")
    by_org = text("SELECT caller_org, COUNT(*), SUM(CASE WHEN success THEN 1 ELSE 0 END) FROM receipts "
                  f"WHERE {where} GROUP BY caller_org ORDER BY caller_org")

    def query(conn: Connection) -> tuple[Any, Any]:
        return conn.execute(listed, params).all(), conn.execute(by_org, params).all()

    return query


def revoked_query(agents: Sequence[str]) -> Callable[[Connection], set[str]]:
    """Which of ``agents`` are revoked (by their own key, or withdrawn by their organisation)."""
    query = text("SELECT id FROM agents WHERE revoked AND id IN :ids").bindparams(bindparam("ids", expanding=True))

    def run(conn: Connection) -> set[str]:
        return set(conn.execute(query, {"ids": list(agents)}).scalars())

    return run


def _score(snapshot: Snapshot, agent: str, skill: str | None, revoked: bool) -> Score:
    """The agent's score; none (the prior) once it is revoked or withdrawn, whatever its receipts said."""
    if revoked:
        return Score(agent=agent, skill=skill or "*")
    rep = snapshot.reputation
    return rep.score(agent, skill) if skill else rep.agent_score(agent)


def summaries(snapshot: Snapshot, agents: Sequence[str], skill: str | None, revoked: set[str]) -> dict[str, Any]:
    """The JSON of ``GET /v1/reputation``: each agent's score, lower bound and evidence for ``skill``."""
    scores = {}
    for agent in agents:
        score = _score(snapshot, agent, skill, agent in revoked)
        low, _ = score.interval()
        scores[agent] = {"score": score.mean, "lower_bound": low, "evidence": score.evidence,
                         "receipts": score.receipts, **({"revoked": True} if agent in revoked else {})}
    return {"skill": skill or "*", "computed_at": snapshot.computed_at, "log_size": snapshot.log_size,
            "agents": scores}


def report(snapshot: Snapshot, agent: str, skill: str | None, listed: Sequence[Any],
           by_org: Sequence[Any], *, revoked: bool = False) -> dict[str, Any]:
    """The JSON of ``GET /v1/agents/{id}/reputation``: the score, its interval, and what it was computed from
    (a revoked or withdrawn agent has no score: ``revoked`` is true and the score is the prior)."""
    rep = snapshot.reputation
    score = _score(snapshot, agent, skill, revoked)
    low, high = score.interval()
    params = rep.params
    return {
        "agent": agent, "skill": skill or "*", "revoked": revoked,
        "score": score.mean, "lower_bound": low, "interval": [low, high],
        "evidence": score.evidence, "successes": score.successes, "failures": score.failures,
        "receipts": score.receipts,
        "computed_at": snapshot.computed_at, "log_size": snapshot.log_size,
        "params": {"a": params.a, "half_life_days": params.half_life / 86400.0,
                   "per_rater_cap": params.per_rater_cap, "min_history": params.min_history,
                   "disputed_weight": params.disputed_weight, "rater_say": params.rater_say,
                   "uncorroborated": params.uncorroborated, "acyclic": params.acyclic, "now": params.now},
        "pretrusted": sorted(rep.pretrusted),
        "inputs": {
            "raters": [{"org": org, "trust": rep.org_trust.get(org, 0.0), "weight": rep.rater_weight(org),
                        "receipts": int(count), "successes": int(successes or 0)}
                       for org, count, successes in by_org],
            "receipts": [{"receipt_id": r[0], "log_index": int(r[1]), "rater_org": r[2], "success": bool(r[3])}
                         for r in listed],
            "receipts_listed_max": LISTED_RECEIPTS,
        },
    }
