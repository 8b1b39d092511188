"""The node's tables: ``a2a_tasks`` (the A2A task store) and ``process_calls`` (the process log).

Revision ID: 0001
Revises:

Nodes from before migrations created these tables with ``metadata.create_all``, each component its own; so
each table (with its indexes) is created here only if it is missing, and such a database is adopted as is.
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "a2a_tasks" not in existing:
        op.create_table(
            "a2a_tasks",
            sa.Column("id", sa.String(length=64), nullable=False),
            sa.Column("agent", sa.String(length=128), nullable=False),
            sa.Column("context_id", sa.String(length=128), nullable=False),
            sa.Column("skill", sa.String(length=128), nullable=True),
            sa.Column("state", sa.String(length=32), nullable=False),
            sa.Column("status", sa.JSON(), nullable=False),
            sa.Column("history", sa.JSON(), nullable=False),
            sa.Column("artifacts", sa.JSON(), nullable=False),
            sa.Column("metadata", sa.JSON(), nullable=True),
            sa.Column("created", sa.Float(), nullable=False),
            sa.Column("updated", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_a2a_tasks_agent_updated", "a2a_tasks", ["agent", "updated"])
        op.create_index("ix_a2a_tasks_context", "a2a_tasks", ["context_id"])
        op.create_index("ix_a2a_tasks_state", "a2a_tasks", ["state"])
    if "process_calls" not in existing:
        op.create_table(
            "process_calls",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("direction", sa.String(length=8), nullable=False),
            sa.Column("transport", sa.String(length=16), nullable=False),
            sa.Column("skill", sa.String(length=128), nullable=False),
            sa.Column("agent", sa.String(length=256), nullable=False),
            sa.Column("model", sa.String(length=256), nullable=True),
            sa.Column("input", sa.JSON(), nullable=True),
            sa.Column("output", sa.JSON(), nullable=True),
            sa.Column("tool_calls", sa.JSON(), nullable=True),
            sa.Column("tokens_in", sa.Integer(), nullable=False),
            sa.Column("tokens_out", sa.Integer(), nullable=False),
            sa.Column("cost", sa.Float(), nullable=False),
            sa.Column("latency_ms", sa.Float(), nullable=False),
            sa.Column("outcome", sa.String(length=16), nullable=False),
            sa.Column("escalated", sa.Boolean(), nullable=False),
            sa.Column("escalation_reason", sa.Text(), nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("trace_id", sa.String(length=64), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_process_calls_at", "process_calls", ["at"])
        op.create_index("ix_process_calls_skill", "process_calls", ["skill"])
        op.create_index("ix_process_calls_trace_id", "process_calls", ["trace_id"])


def downgrade() -> None:
    op.drop_table("process_calls")
    op.drop_table("a2a_tasks")
