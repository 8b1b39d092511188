"""The witness's one table: the latest checkpoint it cosigned for each log it follows.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "witnessed_checkpoints",
        sa.Column("origin", sa.String(512), primary_key=True),
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("cosigned_at", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("witnessed_checkpoints")
