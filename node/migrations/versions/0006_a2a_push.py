"""``a2a_push_configs`` and ``a2a_push_deliveries``: A2A push notifications, durable across restarts.

Revision ID: 0006_a2a_push
Revises: 0005

A caller's webhook configs live beside its tasks; a delivery is stored before its event is acknowledged and
deleted once delivered or given up, so a restart neither loses nor repeats one (node/a2a/push_store.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_a2a_push"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "a2a_push_configs",
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("scheme", sa.String(length=64), nullable=True),
        sa.Column("credentials", sa.Text(), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("agent", "task_id", "id"),
    )
    op.create_table(
        "a2a_push_deliveries",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("config_id", sa.String(length=128), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_a2a_push_deliveries_next_at", "a2a_push_deliveries", ["next_at"])
    op.create_index("ix_a2a_push_deliveries_config", "a2a_push_deliveries", ["agent", "task_id", "config_id"])


def downgrade() -> None:
    op.drop_table("a2a_push_deliveries")
    op.drop_table("a2a_push_configs")
