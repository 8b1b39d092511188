"""What the store returns, and the query values it accepts: results of writes, agent records, change-feed
entries, and the errors a read or write ends with."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


class NotFound(LookupError):
    pass


class BadQuery(ValueError):
    """A search parameter that cannot be honoured (bad cursor, limit out of range)."""


QUERY_INT_MAX = 2**31 - 1
"""The largest integer a client may put in a query or cursor: the range of the 32-bit columns it meets."""
_QUERY_INT = re.compile(r"-?[0-9]{1,10}")


def query_int(raw: str, name: str) -> int:
    """An integer from a query string: ASCII digits only (``str.isdigit`` also takes '²'), within 32 bits."""
    if not _QUERY_INT.fullmatch(raw) or abs(int(raw)) > QUERY_INT_MAX:
        raise BadQuery(f"{name} must be an integer of at most {QUERY_INT_MAX}")
    return int(raw)


@dataclass(frozen=True, slots=True)
class WriteResult:
    created: bool
    agent_id: str
    version: int
    seq: int
    log_index: int | None = None


@dataclass(frozen=True, slots=True)
class NodeHeartbeatResult:
    """A node-level heartbeat: how many agents it kept live, the ids it could not (unknown here, revoked, or
    not endorsed by the signing organisation), and the change-feed position its ``live`` changes reached."""

    live: int
    missing: list[str]
    seq: int


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


def last_seq(value: Any) -> int:
    """The change-feed position a write's result reached (0 when it appended nothing)."""
    if isinstance(value, WriteResult | NodeHeartbeatResult):
        return value.seq
    if isinstance(value, list) and value and isinstance(value[-1], Change):
        return value[-1].seq
    return 0


RECORD_COLUMNS = ("a.id, a.current_key, a.version, a.facts, a.jws, l.expires_at, l.last_seen, "
                  "a.registered_at, a.updated_at, a.revoked, a.revoked_at, a.log_index, a.key_events, "
                  "(SELECT d.mark FROM org_domains d WHERE d.org_id = a.org_id AND d.domain = a.org_domain)")
"""The columns an :class:`AgentRecord` is read from, in :meth:`AgentRecord.from_row` order (the last: the
registry's mark for the domain the facts claim, by primary key; NULL when they claim none), from ``agents a``
joined with :data:`LIVENESS_JOIN`."""
RECORD_WIDTH = 14
"""How many columns :data:`RECORD_COLUMNS` names: a statement's own columns follow them."""
LIVENESS_JOIN = "JOIN agent_liveness l ON l.agent_pk = a.pk"
"""Each agent's heartbeat times (``l``), beside its row ``a``: a statement reading :data:`RECORD_COLUMNS` joins it."""


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
    key_events_text: str = "[]"
    domain_mark: str | None = None
    """The registry's :class:`~guildnet.protocols.domain.DomainMark` for the claimed domain, as stored JSON."""

    @classmethod
    def from_row(cls, row: Any, now: float) -> AgentRecord:
        """A row of :data:`RECORD_COLUMNS`; live means not revoked and not expired at ``now``."""
        return cls(id=row[0], current_key=row[1], version=row[2], facts_text=row[3], jws=row[4],
                   live=(not row[9]) and row[5] > now, last_seen=row[6], registered_at=row[7], updated_at=row[8],
                   revoked=bool(row[9]), revoked_at=row[10], log_index=row[11], key_events_text=row[12],
                   domain_mark=row[13])

    def to_json_text(self) -> str:
        """JSON for the API, splicing the stored facts and key history in as-is (no parse/re-serialise per hit).

        Every record carries what a reader needs to verify it without trusting the registry: the registration
        (``jws``) and the agent's key history (``key_events``)."""
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
        meta["jws"] = self.jws
        text = ('{"facts":' + self.facts_text + ',"key_events":' + self.key_events_text + ","
                + json.dumps(meta, separators=(",", ":"))[1:])
        return text if self.domain_mark is None else text[:-1] + ',"domain":' + self.domain_mark + "}"
