"""An index on ``agents.org_name``: search by organisation name (``?org=acme``) as well as by DID.

Revision ID: 0008
Revises: 0006

Every table a user reads shows organisations by name, so ``registry search --org acme`` and the explorer's
organisation filter take a name as readily as a DID; without the index such a search would read every agent.
A name is a claim, not an identity (two organisations may both call themselves "acme"): results show each
agent's organisation DID.
"""

from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_agents_org_name", "agents", ["org_name"])


def downgrade() -> None:
    op.drop_index("ix_agents_org_name", "agents")
