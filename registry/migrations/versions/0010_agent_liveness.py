"""Liveness in a narrow table of its own: ``agent_liveness`` (ttl, last heartbeat, expiry per agent), moved out of
``agents``.

Revision ID: 0010
Revises: 0009

A heartbeat changes two numbers, yet rewrote a whole ``agents`` row: on SQLite the row with its facts and signed
registration (~2.5 KB, several pages), on PostgreSQL a new version of that row and, since ``expires_at`` was
indexed, an entry in every index of the table including the text-search GIN. Node-level heartbeats covering a
million agents ran at 7,905 (SQLite) and 4,060 (PostgreSQL) agent-liveness updates/s for that reason. Rows of
four numbers make the same update ~1/100 of the bytes. ``agents.live`` stays where it was: it is the state
announced on the change feed, and changes only when an agent goes stale or comes back.

Existing agents' values are copied over, and the columns leave ``agents`` (on SQLite DROP COLUMN rewrites the
table: a one-time cost of the upgrade, about a minute at a million agents).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_MOVED = ("expires_at", "last_seen", "ttl_seconds")


def upgrade() -> None:
    op.create_table(
        "agent_liveness",
        sa.Column("agent_pk", sa.Integer, sa.ForeignKey("agents.pk", ondelete="CASCADE"), primary_key=True),
        sa.Column("ttl_seconds", sa.Integer, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.execute("INSERT INTO agent_liveness (agent_pk, ttl_seconds, last_seen, expires_at) "
               "SELECT pk, ttl_seconds, last_seen, expires_at FROM agents")
    op.create_index("ix_agent_liveness_expires_at", "agent_liveness", ["expires_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE agent_liveness")  # a million copied rows: plan the joins on them from the first query
    op.drop_index("ix_agents_expires_at", "agents")
    for column in _MOVED:
        op.drop_column("agents", column)


def downgrade() -> None:
    op.add_column("agents", sa.Column("expires_at", sa.Float, nullable=False, server_default="0"))
    op.add_column("agents", sa.Column("last_seen", sa.Float, nullable=False, server_default="0"))
    op.add_column("agents", sa.Column("ttl_seconds", sa.Integer, nullable=False, server_default="0"))
    for column in _MOVED:
        op.execute(f"UPDATE agents SET {column} = (SELECT l.{column} FROM agent_liveness l "
                   "WHERE l.agent_pk = agents.pk)")
    op.create_index("ix_agents_expires_at", "agents", ["expires_at"])
    op.drop_table("agent_liveness")
