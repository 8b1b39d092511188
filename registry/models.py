"""The registry's tables (SQLAlchemy 2.0 typed models).

The schema itself is created by the Alembic migrations in ``registry/migrations``; these models are the
typed view the store queries through. Full-text search lives beside them, per dialect: an FTS5 table
(``agents_fts``) on SQLite and a generated ``tsvector`` column with a GIN index on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AgentRow(Base):
    """The lean index record of one agent, with the signed registration it came from."""

    __tablename__ = "agents"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    current_key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    org_name: Mapped[str] = mapped_column(String(128), index=True)
    """Indexed (migration 0008): search takes an organisation's name as well as its DID."""
    description: Mapped[str] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    facts: Mapped[str] = mapped_column(Text)
    jws: Mapped[str] = mapped_column(Text)
    registered_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    live: Mapped[bool] = mapped_column(Boolean)
    """Liveness as last announced on the change feed; the heartbeat times are in ``agent_liveness``."""
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    log_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    """Transparency-log index of the registration now in force (migration 0002)."""
    key_events: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    """The agent's signed key history, a JSON array of compact JWS (migration 0004)."""
    org_domain: Mapped[str | None] = mapped_column(String(253), nullable=True, index=True)
    """The domain the facts claim for the organisation (migration 0006); its mark is in ``org_domains``."""


class OrgDomainRow(Base):
    """The registry's mark for one organisation's claim to one domain (migration 0006): ``mark`` is the
    :class:`~guildnet.protocols.domain.DomainMark` JSON as served; status and time drive the re-check schedule."""

    __tablename__ = "org_domains"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    checked_at: Mapped[float] = mapped_column(Float, index=True)
    mark: Mapped[str] = mapped_column(Text)


class AgentLivenessRow(Base):
    """When an agent was last heard from and when it expires (migration 0010): a narrow row of its own, so a
    heartbeat rewrites four numbers, not the agent's facts and signed registration, and touches no index of
    ``agents``."""

    __tablename__ = "agent_liveness"

    agent_pk: Mapped[int] = mapped_column(ForeignKey("agents.pk", ondelete="CASCADE"), primary_key=True)
    ttl_seconds: Mapped[int] = mapped_column(Integer)
    last_seen: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class AgentVectorRow(Base):
    """The vector of a registered, unrevoked agent's facts, for search by meaning (migration 0009, float16: see
    :mod:`guildnet.registry.meaning`). A table of its own so a search reads 512-byte rows in pk order, not the
    agents rows whose facts and signatures spill over several pages; revocation deletes the row."""

    __tablename__ = "agent_vectors"

    agent_pk: Mapped[int] = mapped_column(ForeignKey("agents.pk", ondelete="CASCADE"), primary_key=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class AgentSkillRow(Base):
    """Skill id -> agent, for discovery by skill."""

    __tablename__ = "agent_skills"

    skill_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_pk: Mapped[int] = mapped_column(ForeignKey("agents.pk", ondelete="CASCADE"), primary_key=True)


class NonceRow(Base):
    """Nonces of accepted signed writes; kept past the clock window, after which ``iat`` refuses replays."""

    __tablename__ = "nonces"

    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class ChangeRow(Base):
    """The ordered feed of index changes that ``/v1/watch`` streams; ``seq`` is the resume point."""

    __tablename__ = "changes"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[float] = mapped_column(Float)
    data: Mapped[str] = mapped_column(Text)


class LogEntryRow(Base):
    """One leaf of the transparency log; ``idx`` is dense (0, 1, 2, ...) and assigned under the append lock."""

    __tablename__ = "log_entries"

    idx: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[str] = mapped_column(String(64))
    data: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)


class ReceiptRow(Base):
    """An accepted, countersigned receipt: what the reputation recompute reads (the token is in the log)."""

    __tablename__ = "receipts"

    receipt_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    log_index: Mapped[int] = mapped_column(BigInteger)
    caller: Mapped[str] = mapped_column(String(64))
    caller_org: Mapped[str] = mapped_column(String(64))
    callee: Mapped[str] = mapped_column(String(64))
    callee_org: Mapped[str] = mapped_column(String(64))
    skill: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)
    rating: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float] = mapped_column(Float)
    accepted_at: Mapped[float] = mapped_column(Float)


Index("ix_agent_skills_agent", AgentSkillRow.agent_pk)
Index("ix_receipts_callee_skill", ReceiptRow.callee, ReceiptRow.skill, ReceiptRow.log_index)
