"""Initial registry schema: agents, skills, nonces, change feed, full-text search.

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
    # Column order matters to SQLite: filters and sort keys first, the large signed texts last, so a
    # search reads the columns it filters on without touching the overflow pages that hold the facts.
    op.create_table(
        "agents",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("current_key", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("live", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("ttl_seconds", sa.Integer, nullable=False),
        sa.Column("registered_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("org_id", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("org_name", sa.String(128), nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("facts", sa.Text, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
    )
    op.create_table(
        "agent_skills",
        sa.Column("skill_id", sa.String(64), primary_key=True),
        sa.Column("agent_pk", sa.Integer, sa.ForeignKey("agents.pk", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_agent_skills_agent", "agent_skills", ["agent_pk"])
    op.create_table(
        "nonces",
        sa.Column("nonce", sa.String(128), primary_key=True),
        sa.Column("expires_at", sa.Float, nullable=False, index=True),
    )
    op.create_table(
        "changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE agents ADD COLUMN search tsvector GENERATED ALWAYS AS ("
            "setweight(to_tsvector('english', name), 'A') || "
            "setweight(to_tsvector('english', tags), 'B') || "
            "setweight(to_tsvector('english', description), 'C')) STORED"
        )
        op.execute("CREATE INDEX ix_agents_search ON agents USING GIN (search)")
    else:
        op.execute("CREATE VIRTUAL TABLE agents_fts USING fts5(name, tags, description, tokenize='porter unicode61')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TABLE agents_fts")
    op.drop_table("changes")
    op.drop_table("nonces")
    op.drop_table("agent_skills")
    op.drop_table("agents")
