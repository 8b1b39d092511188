"""``a2a_tasks.owner``: the authenticated caller whose task it is.

Revision ID: 0004
Revises: 0003

Tasks belong to the caller that created them: GetTask, ListTasks, CancelTask and SubscribeToTask show a caller
its own tasks only. Tasks from before this revision, and anonymous callers' tasks, have no owner (NULL).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    columns = {c["name"] for c in inspector.get_columns("a2a_tasks")}
    indexes = {i["name"] for i in inspector.get_indexes("a2a_tasks")}
    with op.batch_alter_table("a2a_tasks") as batch:
        if "owner" not in columns:  # a table made from the models (by a test, or create_all) already has it
            batch.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        if "ix_a2a_tasks_agent_owner_updated" not in indexes:
            batch.create_index("ix_a2a_tasks_agent_owner_updated", ["agent", "owner", "updated"])


def downgrade() -> None:
    with op.batch_alter_table("a2a_tasks") as batch:
        batch.drop_index("ix_a2a_tasks_agent_owner_updated")
        batch.drop_column("owner")
