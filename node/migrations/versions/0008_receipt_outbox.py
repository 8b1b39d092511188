"""``receipt_outbox``: receipts this node countersigned, kept until the registry files or refuses them.

Revision ID: 0008
Revises: 0005

A receipt the registry could not take when the call ended (the registry down, the caller's agent not yet
registered) used to be lost after one warning; it now waits here and the node files it later
(node/delegation/outbox.py).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006_a2a_push"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "receipt_outbox",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("receipt", sa.Text(), nullable=False),
        sa.Column("caller", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_receipt_outbox_state", "receipt_outbox", ["state"])


def downgrade() -> None:
    op.drop_index("ix_receipt_outbox_state", "receipt_outbox")
    op.drop_table("receipt_outbox")
