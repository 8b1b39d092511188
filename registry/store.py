"""The registry store: every accepted write, the index it feeds, and the change feed.

Each write runs in one transaction that also records its nonce and its change-feed entry, so a refused
write (bad version, revoked id, reused nonce) rolls back whole and leaves the store exactly as it was.
Change-feed entries are numbered in commit order (on PostgreSQL an advisory lock serialises the append,
on SQLite the database has a single writer), which is what lets a watcher resume from a sequence number.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, TextClause, delete, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from guildnet.protocols.receipts import ReceiptRefused
from guildnet.protocols.signed_write import (
    CLOCK_WINDOW_SECONDS,
    ConflictingWrite,
    SignedWrite,
    UnauthorizedWrite,
)

from .db import sync_twin
from .log import append_leaf
from .models import AgentRow, AgentSkillRow, ChangeRow, NonceRow
from .records import ParsedReceipt, parse_registration, parse_rotation, require_action

AGENTS = cast(Table, AgentRow.__table__)
SKILLS = cast(Table, AgentSkillRow.__table__)
NONCES = cast(Table, NonceRow.__table__)
CHANGES = cast(Table, ChangeRow.__table__)
_CHANGE_LOCK_ID = 7_301_947_114

# The write path's statements, built once: constructing Core statements per call cost more than SQLite
# spent executing them (profiled: ~70% of the writer thread's time).
_SELECT_FOR_REGISTER = text("SELECT pk, current_key, version, revoked FROM agents WHERE id = :id")
_SELECT_FOR_WRITE = text("SELECT pk, current_key, revoked, ttl_seconds, live, version FROM agents WHERE id = :id")
_INSERT_NONCE = text("INSERT INTO nonces (nonce, expires_at) VALUES (:nonce, :expires_at) "
                     "ON CONFLICT (nonce) DO NOTHING")
_AGENT_FIELDS = ("name", "org_id", "org_name", "description", "tags", "version", "facts", "jws", "ttl_seconds",
                 "updated_at", "last_seen", "expires_at", "live", "log_index")
_INSERT_AGENT = text(
    "INSERT INTO agents (id, current_key, registered_at, revoked, " + ", ".join(_AGENT_FIELDS) + ") "
    "VALUES (:id, :current_key, :registered_at, false, " + ", ".join(f":{f}" for f in _AGENT_FIELDS) + ") "
    "RETURNING pk")
_UPDATE_AGENT = text("UPDATE agents SET " + ", ".join(f"{f} = :{f}" for f in _AGENT_FIELDS) + " WHERE pk = :pk")
_DELETE_SKILLS = text("DELETE FROM agent_skills WHERE agent_pk = :pk")
_INSERT_SKILL = text("INSERT INTO agent_skills (skill_id, agent_pk) VALUES (:skill_id, :agent_pk)")
_DELETE_FTS = text("DELETE FROM agents_fts WHERE rowid = :pk")
_INSERT_FTS = text("INSERT INTO agents_fts (rowid, name, tags, description) VALUES (:pk, :name, :tags, :description)")
_INSERT_CHANGE = text("INSERT INTO changes (agent_id, kind, at, data) VALUES (:agent_id, :kind, :at, :data) "
                      "RETURNING seq")
_CHANGE_LOCK = text("SELECT pg_advisory_xact_lock(:id)")
_NOTIFY = text("SELECT pg_notify(:channel, :seq)")
_LAST_SEQ = text("SELECT max(seq) FROM changes")
_SKILL_FILTER = "a.pk IN (SELECT s.agent_pk FROM agent_skills s WHERE s.skill_id = :skill)"
_RECORD_COLUMNS = ("a.id, a.current_key, a.version, a.facts, a.jws, a.expires_at, a.last_seen, "
                   "a.registered_at, a.updated_at, a.revoked, a.revoked_at, a.log_index")
_SELECT_PARTIES = text("SELECT id, org_id, current_key, revoked FROM agents WHERE id IN (:caller, :callee)")
_INSERT_RECEIPT = text(
    "INSERT INTO receipts (receipt_id, log_index, caller, caller_org, callee, callee_org, skill, success, rating, "
    "ended_at, accepted_at) VALUES (:receipt_id, :log_index, :caller, :caller_org, :callee, :callee_org, :skill, "
    ":success, :rating, :ended_at, :accepted_at) ON CONFLICT (receipt_id) DO NOTHING")
_GET_AGENT = text(f"SELECT {_RECORD_COLUMNS} FROM agents a WHERE a.id = :id")
_CHANGES_SINCE = text("SELECT seq, agent_id, kind, at, data FROM changes WHERE seq > :seq ORDER BY seq LIMIT :limit")


@lru_cache(maxsize=256)
def _statement(sql: str) -> TextClause:
    """Search SQL varies only by which filters are present: a few dozen shapes, each built once."""
    return text(sql)
_HEARTBEAT = text("UPDATE agents SET last_seen = :now, expires_at = :expires_at, live = true WHERE pk = :pk")
NOTIFY_CHANNEL = "guildnet_registry_changes"
MAX_LIMIT = 100
READER_THREADS = 3
# Ranking scores every match; a word common to 12k of 100k agents took ~90 ms. Text queries are ranked
# within a window of RANK_WINDOW matches (SQLite: the most recently registered; PostgreSQL: the first the
# index yields), which bounds the cost of any query; more words narrow a query below the window.
RANK_WINDOW = 1000


class NotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class WriteResult:
    created: bool
    agent_id: str
    version: int
    seq: int
    log_index: int | None = None


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    receipt_id: str
    log_index: int


@dataclass(frozen=True, slots=True)
class Change:
    seq: int
    agent_id: str
    kind: str
    at: float
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "agent": self.agent_id, "kind": self.kind, "at": self.at, **self.data}


@dataclass(frozen=True, slots=True)
class AgentRecord:
    id: str
    current_key: str
    version: int
    facts_text: str
    jws: str
    live: bool
    last_seen: float
    registered_at: float
    updated_at: float
    revoked: bool
    revoked_at: float | None
    log_index: int | None = None

    def to_json_text(self, *, with_jws: bool) -> str:
        """JSON for the API, splicing the stored facts text in as-is (no parse/re-serialise per hit)."""
        meta = {
            "id": self.id,
            "current_key": self.current_key,
            "version": self.version,
            "live": self.live,
            "last_seen": self.last_seen,
            "registered_at": self.registered_at,
            "updated_at": self.updated_at,
            "revoked": self.revoked,
        }
        if self.revoked_at is not None:
            meta["revoked_at"] = self.revoked_at
        if self.log_index is not None:
            meta["log_index"] = self.log_index
        if with_jws:
            meta["jws"] = self.jws
        return '{"facts":' + self.facts_text + "," + json.dumps(meta, separators=(",", ":"))[1:]


def _seq_of(value: Any) -> int:
    if isinstance(value, WriteResult):
        return value.seq
    if isinstance(value, list) and value and isinstance(value[-1], Change):
        return value[-1].seq
    return 0


class BadQuery(ValueError):
    """A search parameter that cannot be honoured (bad cursor, limit out of range)."""


def _encode_cursor(value: dict[str, int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).rstrip(b"=").decode()


QUERY_INT_MAX = 2**31 - 1
"""The largest integer a client may put in a query or cursor: the range of the 32-bit columns it meets."""
_QUERY_INT = re.compile(r"-?[0-9]{1,10}")


def query_int(raw: str, name: str) -> int:
    """An integer from a query string: ASCII digits only (``str.isdigit`` also takes '²'), within 32 bits."""
    if not _QUERY_INT.fullmatch(raw) or abs(int(raw)) > QUERY_INT_MAX:
        raise BadQuery(f"{name} must be an integer of at most {QUERY_INT_MAX}")
    return int(raw)


def _decode_cursor(cursor: str, key: str) -> int:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise BadQuery("cursor is not one this registry issued") from exc
    if not isinstance(value, dict) or not isinstance(value.get(key), int) or not 0 <= value[key] <= QUERY_INT_MAX:
        raise BadQuery("cursor is not one this registry issued (or belongs to another kind of query)")
    return int(value[key])


_WORD = re.compile(r"\w+", re.UNICODE)


def _fts5_query(q: str) -> str | None:
    words = _WORD.findall(q)[:16]
    return " ".join(f'"{w}"' for w in words) if words else None


@dataclass(slots=True)
class _Pending:
    work: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] | None = None


class RegistryStore:
    """Reads go through the async engine; writes go through one batching writer (group commit).

    Concurrent writes are collected into one transaction, each inside its own SAVEPOINT, and acknowledged
    only after that transaction commits: a refused write rolls back its savepoint alone, an accepted one is
    durable before its caller hears of it, and N writes cost one commit instead of N. The write logic is
    plain synchronous SQLAlchemy Core; on SQLite it runs on a sync pysqlite connection in one dedicated
    thread (one thread hop per batch, not per statement as with aiosqlite), on PostgreSQL through
    ``AsyncConnection.run_sync`` on asyncpg.
    """

    MAX_BATCH = 256

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time,
                 on_commit: Callable[[int], None] | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self._on_commit = on_commit
        self._postgres = engine.dialect.name == "postgresql"
        self._sync_engine = None if self._postgres else sync_twin(engine)
        self._thread = None if self._postgres else ThreadPoolExecutor(1, thread_name_prefix="guildnet-writer")
        # SQLite reads: plain sqlite3 connections on a few threads (WAL lets them run beside the writer);
        # aiosqlite costs several thread hops per query (BEGIN, SELECT, ROLLBACK): ~2.4 ms for a get by id.
        self._reader_engine = None if self._postgres else sync_twin(engine, pool_size=READER_THREADS)
        self._readers = None if self._postgres else ThreadPoolExecutor(READER_THREADS,
                                                                       thread_name_prefix="guildnet-reader")
        self._queue: asyncio.Queue[_Pending] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        for pool in (self._thread, self._readers):
            if pool is not None:
                pool.shutdown(wait=True)
        for twin in (self._sync_engine, self._reader_engine):
            if twin is not None:
                twin.dispose()

    # -- writes -------------------------------------------------------------------------------------

    async def _transaction(self, work: Callable[[Connection], Any]) -> Any:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._writer = asyncio.create_task(self._write_loop(self._queue), name="guildnet-registry-writer")
        pending = _Pending(work, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(pending)
        return await pending.future

    async def _write_loop(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.MAX_BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                if self._thread is not None:
                    await asyncio.get_running_loop().run_in_executor(self._thread, self._commit_sync, batch)
                else:
                    async with self.engine.begin() as conn:
                        await conn.run_sync(self._apply, batch)
            except Exception as exc:  # the commit itself failed: nothing of this batch is acknowledged
                for pending in batch:
                    pending.outcome = (False, exc)
            last_seq = 0
            for pending in batch:
                ok, value = pending.outcome or (False, RuntimeError("write was not applied"))
                if pending.future.done():
                    continue
                if ok:
                    pending.future.set_result(value)
                    last_seq = max(last_seq, _seq_of(value))
                else:
                    pending.future.set_exception(value)
            if last_seq and self._on_commit is not None:
                self._on_commit(last_seq)

    def _commit_sync(self, batch: list[_Pending]) -> None:
        assert self._sync_engine is not None
        with self._sync_engine.begin() as conn:
            self._apply(conn, batch)

    @staticmethod
    def _apply(conn: Connection, batch: list[_Pending]) -> None:
        for pending in batch:
            savepoint = conn.begin_nested()
            try:
                pending.outcome = (True, pending.work(conn))
                savepoint.commit()
            except Exception as exc:
                savepoint.rollback()
                pending.outcome = (False, exc)

    def _use_nonce(self, conn: Connection, write: SignedWrite) -> None:
        inserted = conn.execute(_INSERT_NONCE, {"nonce": write.nonce,
                                                "expires_at": self.clock() + 2 * CLOCK_WINDOW_SECONDS})
        if inserted.rowcount != 1:
            raise UnauthorizedWrite("nonce was used before: signed writes cannot be replayed")

    def _append_log(self, conn: Connection, kind: str, agent_id: str, token: str) -> int:
        """Append a transparency-log leaf; on PostgreSQL first take the lock that orders log and change feed."""
        if self._postgres:
            conn.execute(_CHANGE_LOCK, {"id": _CHANGE_LOCK_ID})
        return append_leaf(conn, kind, agent_id, token)

    def _append_change(self, conn: Connection, agent_id: str, kind: str, data: dict[str, Any], *,
                       locked: bool = False) -> int:
        if self._postgres and not locked:
            conn.execute(_CHANGE_LOCK, {"id": _CHANGE_LOCK_ID})
        seq = int(conn.execute(_INSERT_CHANGE, {"agent_id": agent_id, "kind": kind, "at": self.clock(),
                                                "data": json.dumps(data, separators=(",", ":"))}).scalar_one())
        if self._postgres:
            conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "seq": str(seq)})
        return seq

    async def register(self, write: SignedWrite) -> WriteResult:
        """First registration (kid must be facts.id) or update (kid must be the current key, version higher)."""
        registration = parse_registration(write)
        facts = registration.facts
        facts_text = json.dumps(registration.facts_json, separators=(",", ":"), ensure_ascii=False)
        tags = " ".join(sorted({t for s in facts.skills for t in s.tags} | {s.name for s in facts.skills}
                               | {s.id for s in facts.skills}))

        def work(conn: Connection) -> WriteResult:
            now = self.clock()
            row = conn.execute(_SELECT_FOR_REGISTER, {"id": facts.id}).first()
            values: dict[str, Any] = dict(
                name=facts.name, org_id=facts.organisation.id, org_name=facts.organisation.name,
                description=facts.description, tags=tags, version=facts.version, facts=facts_text,
                jws=write.token, ttl_seconds=facts.ttl_seconds, updated_at=now, last_seen=now,
                expires_at=now + facts.ttl_seconds, live=True)
            if row is None:
                if write.signer != facts.id:
                    raise UnauthorizedWrite("a first registration must be signed by the key whose DID is facts.id")
                self._use_nonce(conn, write)
                values["log_index"] = self._append_log(conn, "register", facts.id, write.token)
                pk = conn.execute(_INSERT_AGENT, {"id": facts.id, "current_key": facts.id,
                                                  "registered_at": now, **values}).scalar_one()
                created = True
            else:
                pk, current_key, stored_version, revoked = row
                if revoked:
                    raise ConflictingWrite("this agent id was revoked and can never be registered again")
                if write.signer != current_key:
                    raise UnauthorizedWrite("the write is not signed by the agent's current key")
                self._use_nonce(conn, write)
                if facts.version <= stored_version:
                    raise ConflictingWrite(
                        f"version {facts.version} is not higher than the stored version {stored_version}")
                values["log_index"] = self._append_log(conn, "register", facts.id, write.token)
                conn.execute(_UPDATE_AGENT, {"pk": pk, **values})
                conn.execute(_DELETE_SKILLS, {"pk": pk})
                created = False
            conn.execute(_INSERT_SKILL, [{"skill_id": s.id, "agent_pk": pk} for s in facts.skills])
            self._index_text(conn, pk, facts.name, tags, facts.description, replace=not created)
            seq = self._append_change(conn, facts.id, "registered" if created else "updated",
                                      {"version": facts.version, "skills": [s.id for s in facts.skills]},
                                      locked=True)
            return WriteResult(created=created, agent_id=facts.id, version=facts.version, seq=seq,
                               log_index=values["log_index"])

        result: WriteResult = await self._transaction(work)
        return result

    def _index_text(self, conn: Connection, pk: int, name: str, tags: str, description: str,
                    *, replace: bool) -> None:
        if self._postgres:
            return  # the generated tsvector column follows the row
        if replace:
            conn.execute(_DELETE_FTS, {"pk": pk})
        conn.execute(_INSERT_FTS, {"pk": pk, "name": name, "tags": tags, "description": description})

    def _load_for_write(self, conn: Connection, agent_id: str, write: SignedWrite) -> Any:
        row = conn.execute(_SELECT_FOR_WRITE, {"id": agent_id}).first()
        if row is None:
            raise NotFound(agent_id)
        if row.revoked:
            raise ConflictingWrite("this agent id is revoked")
        if write.signer != row.current_key:
            raise UnauthorizedWrite("the write is not signed by the agent's current key")
        self._use_nonce(conn, write)
        return row

    async def heartbeat(self, agent_id: str, write: SignedWrite) -> WriteResult:
        require_action(write, "heartbeat", agent_id)

        def work(conn: Connection) -> WriteResult:
            row = self._load_for_write(conn, agent_id, write)
            now = self.clock()
            conn.execute(_HEARTBEAT, {"pk": row.pk, "now": now, "expires_at": now + row.ttl_seconds})
            seq = 0
            if not row.live:
                seq = self._append_change(conn, agent_id, "live", {"live": True})
            return WriteResult(created=False, agent_id=agent_id, version=row.version, seq=seq)

        result: WriteResult = await self._transaction(work)
        return result

    async def revoke(self, agent_id: str, write: SignedWrite) -> WriteResult:
        require_action(write, "revoke", agent_id)

        def work(conn: Connection) -> WriteResult:
            row = self._load_for_write(conn, agent_id, write)
            now = self.clock()
            conn.execute(update(AGENTS).where(AGENTS.c.pk == row.pk).values(
                revoked=True, revoked_at=now, live=False, expires_at=0.0))
            conn.execute(_DELETE_SKILLS, {"pk": row.pk})
            if not self._postgres:
                conn.execute(_DELETE_FTS, {"pk": row.pk})
            index = self._append_log(conn, "revoke", agent_id, write.token)
            seq = self._append_change(conn, agent_id, "revoked", {}, locked=True)
            return WriteResult(created=False, agent_id=agent_id, version=row.version, seq=seq, log_index=index)

        result: WriteResult = await self._transaction(work)
        return result

    async def rotate(self, agent_id: str, write: SignedWrite) -> WriteResult:
        new_key = parse_rotation(write, agent_id)

        def work(conn: Connection) -> WriteResult:
            row = self._load_for_write(conn, agent_id, write)
            conn.execute(update(AGENTS).where(AGENTS.c.pk == row.pk).values(
                current_key=new_key, updated_at=self.clock()))
            index = self._append_log(conn, "rotate", agent_id, write.token)
            seq = self._append_change(conn, agent_id, "rotated", {"current_key": new_key}, locked=True)
            return WriteResult(created=False, agent_id=agent_id, version=row.version, seq=seq, log_index=index)

        result: WriteResult = await self._transaction(work)
        return result

    async def submit_receipt(self, parsed: ParsedReceipt, write: SignedWrite) -> ReceiptResult:
        """Count a countersigned receipt once: both parties registered and live in the index (not revoked),
        of two organisations, submitted by the caller's current key; logged in the same transaction."""
        receipt = parsed.receipt
        claim = receipt.claim
        if claim.ended_at / 1000.0 > self.clock() + CLOCK_WINDOW_SECONDS:
            raise ReceiptRefused("the task ends in the future: a receipt is submitted after the work, and a "
                                 "future date would escape the reputation's time decay")

        def work(conn: Connection) -> ReceiptResult:
            rows = {r.id: r for r in conn.execute(_SELECT_PARTIES, {"caller": claim.caller,
                                                                     "callee": claim.callee})}
            for role, did in (("caller", claim.caller), ("callee", claim.callee)):
                if did not in rows:
                    raise ReceiptRefused(f"the {role} {did} is not registered here")
                if rows[did].revoked:
                    raise ReceiptRefused(f"the {role} {did} is revoked")
            caller, callee = rows[claim.caller], rows[claim.callee]
            if write.signer != caller.current_key:
                raise UnauthorizedWrite("a receipt is submitted by the caller it names, signed with its current key")
            if caller.org_id == callee.org_id:
                raise ReceiptRefused("caller and callee belong to the same organisation: an organisation "
                                          "cannot rate itself, so such receipts are refused, not stored")
            self._use_nonce(conn, write)
            index = self._append_log(conn, "receipt", claim.callee, write.token)
            inserted = conn.execute(_INSERT_RECEIPT, {
                "receipt_id": receipt.receipt_id, "log_index": index, "caller": claim.caller,
                "caller_org": caller.org_id, "callee": claim.callee, "callee_org": callee.org_id,
                "skill": claim.skill, "success": receipt.success, "rating": receipt.rating,
                "ended_at": claim.ended_at / 1000.0, "accepted_at": self.clock()})
            if inserted.rowcount != 1:
                raise ConflictingWrite(f"receipt {receipt.receipt_id} was counted before (same task, caller, callee)")
            return ReceiptResult(receipt_id=receipt.receipt_id, log_index=index)

        result: ReceiptResult = await self._transaction(work)
        return result

    async def sweep_liveness(self) -> list[Change]:
        """Mark agents whose last heartbeat is older than their TTL stale, and announce it once."""
        def work(conn: Connection) -> list[Change]:
            now = self.clock()
            expired = conn.execute(
                update(AGENTS).where(AGENTS.c.live.is_(True), AGENTS.c.expires_at <= now)
                .values(live=False).returning(AGENTS.c.id)).scalars().all()
            changes = []
            for agent_id in sorted(expired):
                seq = self._append_change(conn, agent_id, "live", {"live": False})
                changes.append(Change(seq, agent_id, "live", now, {"live": False}))
            return changes

        changes: list[Change] = await self._transaction(work)
        return changes

    async def purge_nonces(self) -> int:
        def work(conn: Connection) -> int:
            result = conn.execute(delete(NONCES).where(NONCES.c.expires_at < self.clock()))
            return int(result.rowcount or 0)

        count: int = await self._transaction(work)
        return count

    # -- reads --------------------------------------------------------------------------------------

    _RECORD_COLUMNS = _RECORD_COLUMNS

    def _record(self, row: Sequence[Any], now: float) -> AgentRecord:
        return AgentRecord(id=row[0], current_key=row[1], version=row[2], facts_text=row[3], jws=row[4],
                           live=(not row[9]) and row[5] > now, last_seen=row[6], registered_at=row[7],
                           updated_at=row[8], revoked=bool(row[9]), revoked_at=row[10], log_index=row[11])

    async def read(self, query: Callable[[Connection], Any]) -> Any:
        """Run a synchronous read function on a reader connection (for the log and reputation modules)."""
        return await self._read(query)

    async def _read(self, query: Callable[[Connection], Any]) -> Any:
        """Run a read on its own connection: a thread-pool sqlite3 connection, or asyncpg via run_sync."""
        if self._readers is None:
            async with self.engine.connect() as conn:
                return await conn.run_sync(query)

        def run() -> Any:
            assert self._reader_engine is not None
            with self._reader_engine.connect() as conn:
                return query(conn)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def get(self, agent_id: str) -> AgentRecord:
        row = await self._read(lambda conn: conn.execute(_GET_AGENT, {"id": agent_id}).first())
        if row is None:
            raise NotFound(agent_id)
        return self._record(row, self.clock())

    async def search(self, *, skill: str | None = None, q: str | None = None, org: str | None = None,
                     live: bool | None = None, limit: int = 20, cursor: str | None = None
                     ) -> tuple[list[AgentRecord], str | None, int]:
        """One page of matches, the cursor of the next page, and the change-feed position read first.

        A cache that loads pages and then watches from that position misses nothing in between.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery(f"limit must be between 1 and {MAX_LIMIT}")
        now = self.clock()
        where = ["a.revoked = false" if self._postgres else "a.revoked = 0"]
        params: dict[str, Any] = {"limit": limit + 1, "now": now}
        if skill:
            where.append(_SKILL_FILTER)
            params["skill"] = skill
        if org:
            where.append("a.org_id = :org")
            params["org"] = org
        if live is True:
            where.append("a.expires_at > :now")
        elif live is False:
            where.append("a.expires_at <= :now")
        fts = _fts5_query(q) if q else None
        if q and fts is None:
            return [], None, await self.last_seq()
        sql: str
        if fts is not None:
            offset = _decode_cursor(cursor, "o") if cursor else 0
            params["offset"] = offset
            params["window"] = RANK_WINDOW
            if self._postgres:
                params["q"] = q
                # No ORDER BY in the window: a GIN bitmap scan can then stop after :window rows instead of
                # visiting every match (a word common to 12k agents cost ~80 ms with ORDER BY pk DESC).
                sql = (f"SELECT {self._RECORD_COLUMNS} FROM (SELECT pk FROM agents "
                       "WHERE search @@ plainto_tsquery('english', :q) LIMIT :window) m "
                       f"JOIN agents a ON a.pk = m.pk WHERE {' AND '.join(where)} "
                       "ORDER BY ts_rank(a.search, plainto_tsquery('english', :q)) DESC, a.pk "
                       "LIMIT :limit OFFSET :offset")
            else:
                # Rank inside the FTS index and read agent rows for the page alone: revoked agents are
                # removed from the index, so only the skill/org/live filters need the rows (~6 us each).
                params["q"] = fts
                ranked = ("SELECT rowid AS pk, bm25(agents_fts, 10.0, 5.0, 1.0) AS score FROM agents_fts "
                          "WHERE agents_fts MATCH :q ORDER BY rowid DESC LIMIT :window")
                if len(where) > 1:
                    ranked = (f"SELECT a.pk, m.score FROM ({ranked}) m JOIN agents a ON a.pk = m.pk "
                              f"WHERE {' AND '.join(where)}")
                sql = (f"SELECT {self._RECORD_COLUMNS} FROM (SELECT pk, score FROM ({ranked}) "
                       "ORDER BY score, pk LIMIT :limit OFFSET :offset) top "
                       "JOIN agents a ON a.pk = top.pk ORDER BY top.score, top.pk")
        elif skill:
            # Walk the (skill_id, agent_pk) index in order and stop at the page: O(limit), not O(matches).
            where[where.index(_SKILL_FILTER)] = "s.skill_id = :skill"
            params["after"] = _decode_cursor(cursor, "k") if cursor else 0
            sql = (f"SELECT {self._RECORD_COLUMNS}, a.pk FROM agent_skills s JOIN agents a ON a.pk = s.agent_pk "
                   f"WHERE {' AND '.join(where)} AND s.agent_pk > :after ORDER BY s.agent_pk LIMIT :limit")
        else:
            after = _decode_cursor(cursor, "k") if cursor else 0
            where.append("a.pk > :after")
            params["after"] = after
            sql = (f"SELECT {self._RECORD_COLUMNS}, a.pk FROM agents a WHERE {' AND '.join(where)} "
                   "ORDER BY a.pk LIMIT :limit")
        statement = _statement(sql)

        def query(conn: Connection) -> tuple[int, Sequence[Any]]:
            return int(conn.execute(_LAST_SEQ).scalar() or 0), conn.execute(statement, params).all()

        position, rows = await self._read(query)
        more = len(rows) > limit
        rows = rows[:limit]
        records = [self._record(row, now) for row in rows]
        next_cursor = None
        if more:
            next_cursor = (_encode_cursor({"o": params["offset"] + limit}) if fts is not None
                           else _encode_cursor({"k": int(rows[-1][-1])}))
        return records, next_cursor, position

    async def changes_since(self, seq: int, limit: int = 500) -> list[Change]:
        rows = await self._read(lambda conn: conn.execute(_CHANGES_SINCE, {"seq": seq, "limit": limit}).all())
        return [Change(r.seq, r.agent_id, r.kind, r.at, json.loads(r.data)) for r in rows]

    async def last_seq(self) -> int:
        return int(await self._read(lambda conn: conn.execute(_LAST_SEQ).scalar() or 0))
