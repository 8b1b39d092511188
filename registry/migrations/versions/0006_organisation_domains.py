"""Domain-bound organisations: ``agents.org_domain`` and the ``org_domains`` marks.

Revision ID: 0006
Revises: 0005

``agents.org_domain`` is the domain an agent's facts claim for its organisation (``organisation.domain``), so a
record finds the registry's mark for that claim by primary key, and the re-check schedule finds the claims by
index. ``org_domains`` holds one mark per (organisation,
domain): what the last check found, as served (``mark``, JSON), with the status and time the re-check schedule
selects on. Facts registered before this revision cannot claim a domain (the field did not exist), so existing
agents get no domain.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("org_domain", sa.String(253), nullable=True))
    op.create_index("ix_agents_org_domain", "agents", ["org_domain"])
    op.create_table(
        "org_domains",
        sa.Column("org_id", sa.String(64), primary_key=True),
        sa.Column("domain", sa.String(253), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("checked_at", sa.Float, nullable=False),
        sa.Column("mark", sa.Text, nullable=False),
    )
    op.create_index("ix_org_domains_checked_at", "org_domains", ["checked_at"])


def downgrade() -> None:
    op.drop_index("ix_org_domains_checked_at", "org_domains")
    op.drop_table("org_domains")
    op.drop_index("ix_agents_org_domain", "agents")
    op.drop_column("agents", "org_domain")
