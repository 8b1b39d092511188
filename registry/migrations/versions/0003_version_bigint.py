"""``agents.version`` becomes a 64-bit integer.

Revision ID: 0003
Revises: 0002

A node versions its AgentFacts with unix seconds, which pass 2**31 - 1 on 2038-01-19: a 32-bit column would
then refuse every node's registration. SQLite's INTEGER already holds 64 bits, so only PostgreSQL changes.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("agents", "version", type_=sa.BigInteger(), existing_type=sa.Integer(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("agents", "version", type_=sa.Integer(), existing_type=sa.BigInteger(), existing_nullable=False)
