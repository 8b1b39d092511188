"""``schema_pins``: the output schema this node checks each delegated skill's results against, first seen.

Revision ID: 0005
Revises: 0004

A callee's declared output schema is not the caller's check: the first schema seen for a skill is pinned here
and later declarations never replace it (node/delegation/schemas.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schema_pins",
        sa.Column("skill", sa.String(length=256), nullable=False),
        sa.Column("schema", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=256), nullable=False),
        sa.Column("pinned_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("skill"),
    )


def downgrade() -> None:
    op.drop_table("schema_pins")
