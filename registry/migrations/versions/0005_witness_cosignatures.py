"""``witness_cosignatures``: each configured witness's verified cosignature line, per tree size.

Revision ID: 0005
Revises: 0004

The registry serves the largest checkpoint that its witness quorum cosigned, built from these lines and its own
(deterministic) signature over the same checkpoint, so only the lines are stored.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "witness_cosignatures",
        sa.Column("witness", sa.String(255), primary_key=True),
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("cosigned_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_witness_cosignatures_size", "witness_cosignatures", ["size"])


def downgrade() -> None:
    op.drop_index("ix_witness_cosignatures_size", "witness_cosignatures")
    op.drop_table("witness_cosignatures")
