"""Read-only queries behind the explorer pages that the store does not offer: an agent's receipts and their
time buckets, from which the agent page rebuilds reputation over time (the registry keeps no score history),
and the names of the agents a log page mentions.

Each function returns a synchronous query for :meth:`RegistryStore.read`, so it runs on a reader connection
(a reader thread on SQLite, ``run_sync`` on PostgreSQL) like the store's own reads. Both use the
``(callee, skill, log_index)`` index: their cost grows with the receipts about one agent, not with the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

MAX_BUCKETS = 90
"""At most this many points on the reputation-over-time chart."""
BUCKET_WIDTHS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 365 * 86400)
"""Candidate bucket widths in seconds: the smallest that fits the agent's receipt span in MAX_BUCKETS is used,
so a registry a few minutes old still draws a curve and a year-old one draws weeks."""

_RECENT = text(
    "SELECT r.receipt_id, r.log_index, r.caller, r.caller_org, r.skill, r.success, r.rating, r.ended_at, "
    "a.name, a.org_name FROM receipts r LEFT JOIN agents a ON a.id = r.caller "
    "WHERE r.callee = :agent ORDER BY r.log_index DESC LIMIT :limit")
_NAMES = text("SELECT id, name FROM agents WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
_SPAN = text("SELECT MIN(ended_at), MAX(ended_at), COUNT(*) FROM receipts WHERE callee = :agent")
# SQLite truncates a positive float cast to INTEGER (= floor); PostgreSQL rounds a cast, so it floors first.
_BUCKET = {
    "sqlite": "CAST(ended_at / :width AS INTEGER)",
    "postgresql": "CAST(FLOOR(ended_at / :width) AS BIGINT)",
}
_BUCKETS = {dialect: text(f"SELECT {bucket} AS b, caller_org, skill, success, COUNT(*), AVG(ended_at) "
                           "FROM receipts WHERE callee = :agent GROUP BY b, caller_org, skill, success ORDER BY b")
            for dialect, bucket in _BUCKET.items()}


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    """One accepted receipt about the agent, with the caller's name as registered now (if it still is)."""

    receipt_id: str
    log_index: int
    caller: str
    caller_org: str
    skill: str
    success: bool
    rating: float | None
    ended_at: float
    caller_name: str | None
    caller_org_name: str | None


@dataclass(frozen=True, slots=True)
class Bucket:
    """Receipts of one (time bucket, rater organisation, skill, verdict): ``at`` is their mean end time."""

    index: int
    org: str
    skill: str
    success: bool
    count: int
    at: float


@dataclass(frozen=True, slots=True)
class ReceiptSummary:
    recent: list[ReceiptRow]
    total: int
    width: int
    """Bucket width in seconds (0 when there are no receipts)."""
    buckets: list[Bucket]


def bucket_width(first: float, last: float) -> int:
    span = max(last - first, 0.0)
    return next((w for w in BUCKET_WIDTHS if span / w < MAX_BUCKETS), BUCKET_WIDTHS[-1])


def receipt_summary(agent: str, *, limit: int) -> Callable[[Connection], ReceiptSummary]:
    """The newest ``limit`` receipts about ``agent`` and all of them bucketed by time, in one read."""
    def query(conn: Connection) -> ReceiptSummary:
        recent = [ReceiptRow(r[0], int(r[1]), r[2], r[3], r[4], bool(r[5]), r[6], float(r[7]), r[8], r[9])
                  for r in conn.execute(_RECENT, {"agent": agent, "limit": limit})]
        first, last, total = conn.execute(_SPAN, {"agent": agent}).one()
        if not total:
            return ReceiptSummary(recent, 0, 0, [])
        width = bucket_width(float(first), float(last))
        buckets = [Bucket(int(r[0]), r[1], r[2], bool(r[3]), int(r[4]), float(r[5]))
                   for r in conn.execute(_BUCKETS[conn.dialect.name], {"agent": agent, "width": float(width)})]
        return ReceiptSummary(recent, int(total), width, buckets)

    return query


def agent_names(ids: Collection[str]) -> Callable[[Connection], dict[str, str]]:
    """Registered names of the given DIDs (one indexed lookup), so the log page shows names, not only keys."""
    def query(conn: Connection) -> dict[str, str]:
        if not ids:
            return {}
        return {row[0]: row[1] for row in conn.execute(_NAMES, {"ids": sorted(ids)})}

    return query
