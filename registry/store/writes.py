"""The registry's write transactions, as plain synchronous SQL on one connection (the writer's batch).

Each write also records its nonce and its change-feed entry, and appends its transparency-log leaf, in the same
transaction: a refused write (bad version, revoked id, reused nonce) rolls back whole and leaves the store
exactly as it was. Change-feed entries are numbered in commit order (on PostgreSQL an advisory lock serialises
the append, on SQLite the database has a single writer), which is what lets a watcher resume from a sequence
number. The statements are built once: constructing Core statements per call cost more than SQLite spent
executing them (profiled: ~70% of the writer thread's time).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, text
from sqlalchemy.engine import Connection

from guildnet.protocols import keyhistory
from guildnet.protocols.receipts import ReceiptRefused
from guildnet.protocols.signed_write import CLOCK_WINDOW_SECONDS, ConflictingWrite, SignedWrite, UnauthorizedWrite

from ..log import append_leaf
from ..models import AgentRow, NonceRow
from ..records import ParsedReceipt, Registration, Rotation
from .results import Change, NodeHeartbeatResult, NotFound, ReceiptResult, WriteResult

AGENTS = cast(Table, AgentRow.__table__)
NONCES = cast(Table, NonceRow.__table__)
NOTIFY_CHANNEL = "guildnet_registry_changes"
_CHANGE_LOCK_ID = 7_301_947_114

_SELECT_FOR_REGISTER = text("SELECT pk, current_key, version, revoked, key_events FROM agents WHERE id = :id")
_ADOPT_INCEPTION = text("UPDATE agents SET key_events = :key_events WHERE pk = :pk")
_SELECT_FOR_WRITE = text("SELECT pk, current_key, org_id, revoked, live, version, key_events FROM agents "
                         "WHERE id = :id")
_INSERT_NONCE = text("INSERT INTO nonces (nonce, expires_at) VALUES (:nonce, :expires_at) "
                     "ON CONFLICT (nonce) DO NOTHING")
_AGENT_FIELDS = ("name", "org_id", "org_name", "description", "tags", "version", "facts", "jws", "updated_at", "live",
                 "log_index", "org_domain")
_INSERT_AGENT = text(
    "INSERT INTO agents (id, current_key, registered_at, revoked, key_events, " + ", ".join(_AGENT_FIELDS) + ") "
    "VALUES (:id, :current_key, :registered_at, false, :key_events, " + ", ".join(f":{f}" for f in _AGENT_FIELDS)
    + ") RETURNING pk")
_UPDATE_AGENT = text("UPDATE agents SET " + ", ".join(f"{f} = :{f}" for f in _AGENT_FIELDS) + " WHERE pk = :pk")
_ROTATE_AGENT = text("UPDATE agents SET current_key = :current_key, key_events = :key_events WHERE pk = :pk")
_DELETE_SKILLS = text("DELETE FROM agent_skills WHERE agent_pk = :pk")
_INSERT_SKILL = text("INSERT INTO agent_skills (skill_id, agent_pk) VALUES (:skill_id, :agent_pk)")
INSERT_VECTOR = text("INSERT INTO agent_vectors (agent_pk, embedding) VALUES (:agent_pk, :embedding) "
                     "ON CONFLICT (agent_pk) DO UPDATE SET embedding = excluded.embedding")
_DELETE_VECTOR = text("DELETE FROM agent_vectors WHERE agent_pk = :pk")
_DELETE_FTS = text("DELETE FROM agents_fts WHERE rowid = :pk")
_INSERT_FTS = text("INSERT INTO agents_fts (rowid, name, tags, description) VALUES (:pk, :name, :tags, :description)")
_INSERT_CHANGE = text("INSERT INTO changes (agent_id, kind, at, data) VALUES (:agent_id, :kind, :at, :data) "
                      "RETURNING seq")
_CHANGE_LOCK = text("SELECT pg_advisory_xact_lock(:id)")
_NOTIFY = text("SELECT pg_notify(:channel, :seq)")
UPSERT_LIVENESS = text("INSERT INTO agent_liveness (agent_pk, ttl_seconds, last_seen, expires_at) "
                       "VALUES (:agent_pk, :ttl_seconds, :last_seen, :expires_at) ON CONFLICT (agent_pk) DO UPDATE "
                       "SET ttl_seconds = excluded.ttl_seconds, last_seen = excluded.last_seen, "
                       "expires_at = excluded.expires_at")
_HEARTBEAT = text("UPDATE agent_liveness SET last_seen = :now, expires_at = CAST(:now AS FLOAT) + ttl_seconds "
                  "WHERE agent_pk = :pk")
_ANNOUNCE_LIVE = text("UPDATE agents SET live = true WHERE pk IN :pks").bindparams(bindparam("pks", expanding=True))
# A node-level heartbeat names up to 2,048 agents: each list goes as one parameter (a JSON array on SQLite, an array
# on PostgreSQL), not as 2,048 expanded ones that SQLAlchemy renders into the statement each time. The statement
# looks each named id up and nothing else; the organisation and revocation are checked on the rows it returns.
# Given the organisation as a condition, SQLite's planner walked the organisation's index instead (every agent of
# the organisation, 20,000 of them at 1M agents, for a heartbeat naming 2,048) and PostgreSQL's intersected both
# indexes, reading the organisation's 20,000 entries as well.
_NAMED_AGENTS = {
    False: text("SELECT a.pk, a.id, a.live, a.org_id, a.revoked FROM json_each(:ids) AS j CROSS JOIN agents AS a "
                "ON a.id = j.value ORDER BY a.pk"),
    True: text("SELECT pk, id, live, org_id, revoked FROM agents WHERE id = ANY(CAST(:ids AS TEXT[])) ORDER BY pk")}
_HEARTBEAT_MANY = {
    False: text("UPDATE agent_liveness SET last_seen = :now, expires_at = :now + ttl_seconds "
                "WHERE agent_pk IN (SELECT value FROM json_each(:pks))"),
    True: text("UPDATE agent_liveness SET last_seen = :now, expires_at = CAST(:now AS FLOAT) + ttl_seconds "
               "WHERE agent_pk = ANY(CAST(:pks AS INTEGER[]))")}
_REVOKE = text("UPDATE agents SET revoked = true, revoked_at = :now, live = false WHERE pk = :pk")
_EXPIRE = text("UPDATE agent_liveness SET expires_at = 0 WHERE agent_pk = :pk")
_EXPIRED = text("SELECT a.pk, a.id FROM agent_liveness l JOIN agents a ON a.pk = l.agent_pk "
                "WHERE l.expires_at <= :now AND a.live")
_ANNOUNCE_STALE = text("UPDATE agents SET live = false WHERE pk IN :pks").bindparams(bindparam("pks", expanding=True))
Admission = Callable[[str, str], str | None]
"""Given a receipt's caller and callee organisations: why it is held out of the log, or None to admit it."""
_SELECT_PARTIES = text("SELECT id, org_id, current_key, revoked FROM agents WHERE id IN (:caller, :callee)")
_INSERT_RECEIPT = text(
    "INSERT INTO receipts (receipt_id, log_index, caller, caller_org, callee, callee_org, skill, success, rating, "
    "ended_at, accepted_at) VALUES (:receipt_id, :log_index, :caller, :caller_org, :callee, :callee_org, :skill, "
    ":success, :rating, :ended_at, :accepted_at) ON CONFLICT (receipt_id) DO NOTHING")


def facts_values(registration: Registration, write: SignedWrite, now: float) -> dict[str, Any]:
    """The agent row's columns a registration sets (all but its id, key, history and log index); its liveness
    row is :func:`liveness_values`."""
    facts = registration.facts
    tags = " ".join(sorted({t for s in facts.skills for t in s.tags} | {s.name for s in facts.skills}
                           | {s.id for s in facts.skills}))
    return dict(
        name=facts.name, org_id=facts.organisation.id, org_name=facts.organisation.name,
        description=facts.description, tags=tags, version=facts.version,
        facts=json.dumps(registration.facts_json, separators=(",", ":"), ensure_ascii=False),
        jws=write.token, updated_at=now, live=True, org_domain=facts.organisation.domain)


def liveness_values(registration: Registration, pk: int, now: float) -> dict[str, Any]:
    """The ``agent_liveness`` row a registration sets: heard from now, live for its TTL."""
    ttl = registration.facts.ttl_seconds
    return {"agent_pk": pk, "ttl_seconds": ttl, "last_seen": now, "expires_at": now + ttl}


@dataclass(frozen=True, slots=True)
class Writes:
    """The write transactions of one back end (``postgres``: advisory locks, NOTIFY, a generated tsvector;
    else SQLite: an FTS5 table kept by hand)."""

    postgres: bool
    clock: Callable[[], float]

    # -- what every write shares --------------------------------------------------------------------

    def _use_nonce(self, conn: Connection, write: SignedWrite) -> None:
        inserted = conn.execute(_INSERT_NONCE, {"nonce": write.nonce,
                                                "expires_at": self.clock() + 2 * CLOCK_WINDOW_SECONDS})
        if inserted.rowcount != 1:
            raise UnauthorizedWrite("nonce was used before: signed writes cannot be replayed")

    def _append_log(self, conn: Connection, kind: str, agent_id: str, token: str) -> int:
        """Append a transparency-log leaf; on PostgreSQL first take the lock that orders log and change feed."""
        if self.postgres:
            conn.execute(_CHANGE_LOCK, {"id": _CHANGE_LOCK_ID})
        return append_leaf(conn, kind, agent_id, token)

    def _append_change(self, conn: Connection, agent_id: str, kind: str, data: dict[str, Any], *,
                       locked: bool = False) -> int:
        if self.postgres and not locked:
            conn.execute(_CHANGE_LOCK, {"id": _CHANGE_LOCK_ID})
        seq = int(conn.execute(_INSERT_CHANGE, {"agent_id": agent_id, "kind": kind, "at": self.clock(),
                                                "data": json.dumps(data, separators=(",", ":"))}).scalar_one())
        if self.postgres:
            conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "seq": str(seq)})
        return seq

    def _list(self, values: list[Any]) -> list[Any] | str:
        """A list as one statement parameter: itself on PostgreSQL (an array), JSON text for SQLite's json_each."""
        return values if self.postgres else json.dumps(values)

    def _index_text(self, conn: Connection, pk: int, name: str, tags: str, description: str,
                    *, replace: bool) -> None:
        if self.postgres:
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

    # -- the writes ---------------------------------------------------------------------------------

    def register(self, conn: Connection, registration: Registration, write: SignedWrite) -> WriteResult:
        """First registration (kid must be facts.id) or update (kid must be the current key, version higher)."""
        facts = registration.facts
        row = conn.execute(_SELECT_FOR_REGISTER, {"id": facts.id}).first()
        if row is None:
            if write.signer != facts.id:
                raise UnauthorizedWrite("a first registration must be signed by the key whose DID is facts.id")
            self._use_nonce(conn, write)
            return self._store_facts(conn, None, registration, write)
        if row.revoked:
            raise ConflictingWrite("this agent id was revoked and can never be registered again")
        if write.signer != row.current_key:
            raise UnauthorizedWrite("the write is not signed by the agent's current key")
        history = json.loads(row.key_events)
        if registration.inception is not None and history[:1] != [registration.inception]:
            if history:
                raise ConflictingWrite("this agent already has a key history with another inception")
            # An agent registered without one adopts it (its key, the id, signed the write and the event).
            conn.execute(_ADOPT_INCEPTION, {"pk": row.pk, "key_events": json.dumps([registration.inception])})
        self._use_nonce(conn, write)
        return self._store_facts(conn, row.pk, registration, write, stored_version=row.version)

    def _store_facts(self, conn: Connection, pk: int | None, registration: Registration, write: SignedWrite, *,
                     stored_version: int = 0) -> WriteResult:
        """Write the facts of a registration (signer and nonce already checked): a new row when ``pk`` is None."""
        facts = registration.facts
        if pk is not None and facts.version <= stored_version:
            raise ConflictingWrite(f"version {facts.version} is not higher than the stored version {stored_version}")
        now = self.clock()
        values = facts_values(registration, write, now)
        tags = values["tags"]
        values["log_index"] = self._append_log(conn, "register", facts.id, write.token)
        if pk is None:
            events = [registration.inception] if registration.inception else []
            pk = conn.execute(_INSERT_AGENT, {"id": facts.id, "current_key": facts.id, "registered_at": now,
                                              "key_events": json.dumps(events), **values}).scalar_one()
        else:
            conn.execute(_UPDATE_AGENT, {"pk": pk, **values})
            conn.execute(_DELETE_SKILLS, {"pk": pk})
        conn.execute(UPSERT_LIVENESS, liveness_values(registration, pk, now))
        conn.execute(_INSERT_SKILL, [{"skill_id": s.id, "agent_pk": pk} for s in facts.skills])
        conn.execute(INSERT_VECTOR, {"agent_pk": pk, "embedding": registration.embedding})
        self._index_text(conn, pk, facts.name, tags, facts.description, replace=stored_version > 0)
        seq = self._append_change(conn, facts.id, "updated" if stored_version else "registered",
                                  {"version": facts.version, "skills": [s.id for s in facts.skills]}, locked=True)
        return WriteResult(created=not stored_version, agent_id=facts.id, version=facts.version, seq=seq,
                           log_index=values["log_index"])

    def heartbeat(self, conn: Connection, agent_id: str, write: SignedWrite) -> WriteResult:
        row = self._load_for_write(conn, agent_id, write)
        conn.execute(_HEARTBEAT, {"pk": row.pk, "now": self.clock()})
        seq = 0
        if not row.live:
            conn.execute(_ANNOUNCE_LIVE, {"pks": [row.pk]})
            seq = self._append_change(conn, agent_id, "live", {"live": True})
        return WriteResult(created=False, agent_id=agent_id, version=row.version, seq=seq)

    def node_heartbeat(self, conn: Connection, agents: list[str], write: SignedWrite) -> NodeHeartbeatResult:
        """Keep ``agents`` live on the word of their organisation (the write's signer): one signature and one
        UPDATE for a node's whole set. Agents not endorsed by that organisation, revoked or unknown are left as
        they are and named in the result (the node registers them again); an agent that was stale is announced
        live, as a per-agent heartbeat would."""
        self._use_nonce(conn, write)
        rows = [row for row in conn.execute(_NAMED_AGENTS[self.postgres], {"ids": self._list(agents)})
                if row.org_id == write.signer and not row.revoked]
        now = self.clock()
        if rows:
            conn.execute(_HEARTBEAT_MANY[self.postgres], {"now": now, "pks": self._list([r.pk for r in rows])})
        stale = [row for row in rows if not row.live]
        if stale:
            conn.execute(_ANNOUNCE_LIVE, {"pks": [row.pk for row in stale]})
        seq = 0
        for row in stale:
            seq = self._append_change(conn, row.id, "live", {"live": True}, locked=seq > 0)
        found = {r.id for r in rows}
        return NodeHeartbeatResult(live=len(rows), missing=[a for a in agents if a not in found], seq=seq)

    def revoke(self, conn: Connection, agent_id: str, write: SignedWrite) -> WriteResult:
        return self._revoke(conn, self._load_for_write(conn, agent_id, write), agent_id, write, "revoke", {})

    def withdraw(self, conn: Connection, agent_id: str, write: SignedWrite) -> WriteResult:
        """The agent's organisation takes its endorsement back: the agent is revoked at once, whatever its own
        key (perhaps stolen) does; it can never register again, and sends no more receipts."""
        row = conn.execute(_SELECT_FOR_WRITE, {"id": agent_id}).first()
        if row is None:
            raise NotFound(agent_id)
        if row.revoked:
            raise ConflictingWrite("this agent id is revoked")
        if write.signer != row.org_id:
            raise UnauthorizedWrite("an endorsement is withdrawn by the organisation key that gave it")
        self._use_nonce(conn, write)
        return self._revoke(conn, row, agent_id, write, "withdraw", {"by": "organisation"})

    def _revoke(self, conn: Connection, row: Any, agent_id: str, write: SignedWrite, kind: str,
                data: dict[str, Any]) -> WriteResult:
        conn.execute(_REVOKE, {"pk": row.pk, "now": self.clock()})
        conn.execute(_EXPIRE, {"pk": row.pk})
        conn.execute(_DELETE_SKILLS, {"pk": row.pk})
        conn.execute(_DELETE_VECTOR, {"pk": row.pk})
        if not self.postgres:
            conn.execute(_DELETE_FTS, {"pk": row.pk})
        index = self._append_log(conn, kind, agent_id, write.token)
        seq = self._append_change(conn, agent_id, "revoked", data, locked=True)
        return WriteResult(created=False, agent_id=agent_id, version=row.version, seq=seq, log_index=index)

    def rotate(self, conn: Connection, agent_id: str, rotation: Rotation, write: SignedWrite) -> WriteResult:
        """Hand the agent over to the key its history committed to, and store its facts signed by that key, in
        one transaction: the record is never served signed by a key that is no longer in force."""
        row = self._load_for_write(conn, agent_id, write)
        history = json.loads(row.key_events)
        try:
            state = keyhistory.replay(agent_id, [*history, rotation.event])
        except keyhistory.KeyHistoryError as exc:
            raise UnauthorizedWrite(f"the rotation does not follow the agent's key history: {exc}") from exc
        if state.seq != len(history) or rotation.registration_write.signer != state.key:
            raise UnauthorizedWrite("the rotation's registration must be signed by the new key")
        self._use_nonce(conn, rotation.registration_write)
        index = self._append_log(conn, "rotate", agent_id, write.token)
        conn.execute(_ROTATE_AGENT, {"pk": row.pk, "current_key": state.key,
                                     "key_events": json.dumps([*history, rotation.event])})
        self._append_change(conn, agent_id, "rotated", {"key_event": rotation.event, "seq": state.seq}, locked=True)
        result = self._store_facts(conn, row.pk, rotation.registration, rotation.registration_write,
                                   stored_version=row.version)
        return WriteResult(created=False, agent_id=agent_id, version=result.version, seq=result.seq, log_index=index)

    def receipt(self, conn: Connection, parsed: ParsedReceipt, write: SignedWrite,
                admission: Admission | None = None) -> ReceiptResult:
        """Count a countersigned receipt once: both parties registered (not revoked), of two organisations,
        submitted by the caller's current key, admitted by ``admission`` (given the caller's and the callee's
        organisations, the reason to hold it out, or None); logged in the same transaction."""
        receipt = parsed.receipt
        claim = receipt.claim
        rows = {r.id: r for r in conn.execute(_SELECT_PARTIES, {"caller": claim.caller, "callee": claim.callee})}
        for role, did in (("caller", claim.caller), ("callee", claim.callee)):
            if did not in rows:
                raise ReceiptRefused(f"the {role} {did} is not registered here")
            if rows[did].revoked:
                raise ReceiptRefused(f"the {role} {did} is revoked")
        caller, callee = rows[claim.caller], rows[claim.callee]
        if write.signer != caller.current_key:
            raise UnauthorizedWrite("a receipt is submitted by the caller it names, signed with its current key")
        receipt.check_signers(callee_key=callee.current_key, caller_key=caller.current_key)
        if caller.org_id == callee.org_id:
            raise ReceiptRefused("caller and callee belong to the same organisation: an organisation "
                                 "cannot rate itself, so such receipts are refused, not stored")
        held_out = admission(caller.org_id, callee.org_id) if admission is not None else None
        if held_out is not None:
            raise ReceiptRefused(held_out)
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

    def sweep_liveness(self, conn: Connection) -> list[Change]:
        """Mark agents whose last heartbeat is older than their TTL stale, and announce it once."""
        now = self.clock()
        expired = conn.execute(_EXPIRED, {"now": now}).all()
        if expired:
            conn.execute(_ANNOUNCE_STALE, {"pks": [pk for pk, _ in expired]})
        changes = []
        for agent_id in sorted(agent_id for _, agent_id in expired):
            seq = self._append_change(conn, agent_id, "live", {"live": False})
            changes.append(Change(seq, agent_id, "live", now, {"live": False}))
        return changes

    def purge_nonces(self, conn: Connection) -> int:
        return int(conn.execute(delete(NONCES).where(NONCES.c.expires_at < self.clock())).rowcount or 0)
