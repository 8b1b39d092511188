"""The registry's tables (SQLAlchemy 2.0 typed models).

The schema itself is created by the Alembic migrations in ``registry/migrations``; these models are the
typed view the store queries through. Full-text search lives beside them, per dialect: an FTS5 table
(``agents_fts``) on SQLite and a generated ``tsvector`` column with a GIN index on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
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
    org_name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer)
    facts: Mapped[str] = mapped_column(Text)
    jws: Mapped[str] = mapped_column(Text)
    ttl_seconds: Mapped[int] = mapped_column(Integer)
    registered_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    live: Mapped[bool] = mapped_column(Boolean)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)


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


Index("ix_agent_skills_agent", AgentSkillRow.agent_pk)
