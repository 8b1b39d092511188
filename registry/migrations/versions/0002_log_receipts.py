"""Transparency log and receipts: ``log_entries``, ``receipts``, and ``agents.log_index``.

Revision ID: 0002
Revises: 0001

A database created before this revision already holds agents whose history was never logged. The upgrade
starts the log with one ``register`` leaf per existing agent (its stored signed registration, in
registration order), so every agent the registry serves has a leaf its clients can check; revocations and
rotations made before the upgrade are not in the log (their signed writes were never stored).
"""

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _leaf_data(kind: str, agent: str, token: str) -> str:
    # Same bytes as guildnet.protocols.transparency.leaf_data (kept literal here: a migration must not change later).
    return json.dumps({"agent": agent, "jws": token, "kind": kind}, separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False)


def upgrade() -> None:
    op.create_table(
        "log_entries",
        sa.Column("idx", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("ix_log_entries_leaf_hash", "log_entries", ["leaf_hash"])
    op.create_table(
        "receipts",
        sa.Column("receipt_id", sa.String(64), primary_key=True),
        sa.Column("log_index", sa.BigInteger, nullable=False),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("caller_org", sa.String(64), nullable=False),
        sa.Column("callee", sa.String(64), nullable=False),
        sa.Column("callee_org", sa.String(64), nullable=False),
        sa.Column("skill", sa.String(64), nullable=False),
        sa.Column("success", sa.Boolean, nullable=False),
        sa.Column("rating", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=False),
        sa.Column("accepted_at", sa.Float, nullable=False),
    )
    op.create_index("ix_receipts_callee_skill", "receipts", ["callee", "skill", "log_index"])
    op.add_column("agents", sa.Column("log_index", sa.BigInteger, nullable=True))

    bind = op.get_bind()
    agents = bind.execute(sa.text("SELECT pk, id, jws FROM agents ORDER BY pk")).all()
    for index, (pk, agent_id, token) in enumerate(agents):
        data = _leaf_data("register", agent_id, token)
        bind.execute(sa.text("INSERT INTO log_entries (idx, kind, agent_id, data, leaf_hash) "
                             "VALUES (:idx, 'register', :agent, :data, :hash)"),
                     {"idx": index, "agent": agent_id, "data": data,
                      "hash": hashlib.sha256(b"\x00" + data.encode()).digest()})
        bind.execute(sa.text("UPDATE agents SET log_index = :idx WHERE pk = :pk"), {"idx": index, "pk": pk})


def downgrade() -> None:
    # Plain ALTER (SQLite >= 3.35 has DROP COLUMN): a batch copy would drop and recreate ``agents``, and with
    # foreign keys on, dropping it cascades into agent_skills.
    op.execute("ALTER TABLE agents DROP COLUMN log_index")
    op.drop_index("ix_receipts_callee_skill", "receipts")
    op.drop_table("receipts")
    op.drop_index("ix_log_entries_leaf_hash", "log_entries")
    op.drop_table("log_entries")
