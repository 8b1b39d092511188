"""Search by meaning: ``agent_vectors``, each unrevoked agent's facts as a vector, filled in for agents already
stored.

Revision ID: 0009
Revises: 0008

A table of its own, not a column of ``agents``: a search by meaning reads every candidate's vector, and 512-byte
rows in primary-key order read ~10 times faster than the same bytes at the end of agents rows whose facts and
signatures spill over several pages (SQLite, measured: ~3 ms for 1,000 agents). The vector (float16 bytes,
:mod:`guildnet.registry.meaning`) is written at registration from then on; here it is computed for the agents
registered before, from their stored facts, a thousand at a time (~0.1 ms an agent: a million agents take a
few minutes, once). Revoked agents are never searched, so they get none.
"""

import json

import sqlalchemy as sa
from alembic import op

from guildnet.registry.meaning import embed_facts

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.create_table(
        "agent_vectors",
        sa.Column("agent_pk", sa.Integer, sa.ForeignKey("agents.pk", ondelete="CASCADE"), primary_key=True),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
    )
    conn = op.get_bind()
    select = sa.text("SELECT pk, facts FROM agents WHERE revoked = :no AND pk > :after ORDER BY pk LIMIT :n")
    insert = sa.text("INSERT INTO agent_vectors (agent_pk, embedding) VALUES (:pk, :embedding)")
    after = 0
    while rows := conn.execute(select, {"no": False, "after": after, "n": _BATCH}).all():
        vectors = []
        for pk, facts in rows:
            document = json.loads(facts)
            if isinstance(document, dict):
                vectors.append({"pk": pk, "embedding": embed_facts(document)})
        if vectors:
            conn.execute(insert, vectors)
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_table("agent_vectors")
