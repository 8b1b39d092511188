"""First registrations in bulk: a run of new agents in one group-committed batch shares its statements.

Alone, a first registration costs nine statements (savepoint, look-up, nonce, log leaf, agent, skills, text
index, change, release): on PostgreSQL nine round trips, ~4.9 ms of a batch's serial time at 100k agents; on
SQLite ~1.2 ms, most of it SQLAlchemy's per-statement work (profiled). A run of them shares two look-ups and
one multi-row statement per table instead, whatever its length.

The run is checked first: every id new and signed by its own key, every nonce unused, nothing twice. Anything
else (an update, a replay, a replica that registered the same id a moment ago: a unique-key error) raises,
and the writer rolls the run back and applies each write alone, which accepts or refuses it exactly as it
always did. The rows, leaves and change entries are those the single path writes, in the same order.
"""

from __future__ import annotations

import json
from typing import cast

from sqlalchemy import Table, bindparam, insert, text
from sqlalchemy.engine import Connection

from guildnet.protocols.merkle import leaf_hash
from guildnet.protocols.signed_write import CLOCK_WINDOW_SECONDS, SignedWrite
from guildnet.protocols.transparency import leaf_data

from ..models import ChangeRow
from ..records import Registration
from .results import WriteResult
from .writes import (
    _CHANGE_LOCK,
    _CHANGE_LOCK_ID,
    _INSERT_FTS,
    _INSERT_SKILL,
    _NOTIFY,
    AGENTS,
    INSERT_VECTOR,
    NOTIFY_CHANNEL,
    UPSERT_LIVENESS,
    Writes,
    facts_values,
    liveness_values,
)

CHANGES = cast(Table, ChangeRow.__table__)
_TAKEN_IDS = text("SELECT id FROM agents WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
_USED_NONCES = text("SELECT nonce FROM nonces WHERE nonce IN :nonces").bindparams(bindparam("nonces", expanding=True))
_INSERT_NONCE = text("INSERT INTO nonces (nonce, expires_at) VALUES (:nonce, :expires_at)")
_NEXT_LEAF = text("SELECT COALESCE(MAX(idx), -1) + 1 FROM log_entries")
_INSERT_LEAF = text("INSERT INTO log_entries (idx, kind, agent_id, data, leaf_hash) "
                    "VALUES (:idx, 'register', :agent, :data, :hash)")
_INSERT_AGENTS = insert(AGENTS).returning(AGENTS.c.pk, sort_by_parameter_order=True)
_INSERT_CHANGES = insert(CHANGES).returning(CHANGES.c.seq, sort_by_parameter_order=True)

Item = tuple[Registration, SignedWrite]


class NotBulk(Exception):
    """The run holds a write that is not a plain first registration: apply each alone."""


def register_new(writes: Writes, conn: Connection, items: list[Item]) -> list[WriteResult]:
    """Store a run of first registrations (signatures and facts already checked) with one statement per table."""
    ids = [registration.facts.id for registration, _ in items]
    nonces = [write.nonce for _, write in items]
    if (len(set(ids)) < len(ids) or len(set(nonces)) < len(nonces)
            or any(write.signer != registration.facts.id for registration, write in items)):
        raise NotBulk
    if (conn.execute(_TAKEN_IDS, {"ids": ids}).first() is not None
            or conn.execute(_USED_NONCES, {"nonces": nonces}).first() is not None):
        raise NotBulk
    now = writes.clock()
    conn.execute(_INSERT_NONCE, [{"nonce": n, "expires_at": now + 2 * CLOCK_WINDOW_SECONDS} for n in nonces])
    if writes.postgres:
        conn.execute(_CHANGE_LOCK, {"id": _CHANGE_LOCK_ID})  # orders the log and the change feed across replicas
    first_leaf = int(conn.execute(_NEXT_LEAF).scalar_one())
    leaves = []
    rows = []
    for i, (registration, write) in enumerate(items):
        data = leaf_data("register", registration.facts.id, write.token)
        leaves.append({"idx": first_leaf + i, "agent": registration.facts.id, "data": data.decode(),
                       "hash": leaf_hash(data)})
        events = [registration.inception] if registration.inception else []
        rows.append({**facts_values(registration, write, now), "id": registration.facts.id,
                     "current_key": registration.facts.id, "registered_at": now, "revoked": False,
                     "key_events": json.dumps(events), "log_index": first_leaf + i})
    conn.execute(_INSERT_LEAF, leaves)
    pks = conn.execute(_INSERT_AGENTS, rows).scalars().all()
    conn.execute(UPSERT_LIVENESS, [liveness_values(registration, pk, now)
                                   for (registration, _), pk in zip(items, pks, strict=True)])
    conn.execute(_INSERT_SKILL, [{"skill_id": skill.id, "agent_pk": pk}
                                 for (registration, _), pk in zip(items, pks, strict=True)
                                 for skill in registration.facts.skills])
    conn.execute(INSERT_VECTOR, [{"agent_pk": pk, "embedding": registration.embedding}
                                 for (registration, _), pk in zip(items, pks, strict=True)])
    if not writes.postgres:  # PostgreSQL's tsvector is a generated column
        conn.execute(_INSERT_FTS, [{"pk": pk, "name": row["name"], "tags": row["tags"],
                                    "description": row["description"]} for row, pk in zip(rows, pks, strict=True)])
    seqs = conn.execute(_INSERT_CHANGES, [
        {"agent_id": registration.facts.id, "kind": "registered", "at": now,
         "data": json.dumps({"version": registration.facts.version,
                             "skills": [s.id for s in registration.facts.skills]}, separators=(",", ":"))}
        for registration, _ in items]).scalars().all()
    if writes.postgres:
        conn.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "seq": str(seqs[-1])})
    return [WriteResult(created=True, agent_id=registration.facts.id, version=registration.facts.version, seq=seq,
                        log_index=first_leaf + i)
            for i, ((registration, _), seq) in enumerate(zip(items, seqs, strict=True))]
