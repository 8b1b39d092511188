"""Search by meaning: ``agents.embedding``, each agent's facts as a vector, filled in for agents already stored.

Revision ID: 0009
Revises: 0008

The vector (float16 bytes, :mod:`guildnet.registry.meaning`) is computed at registration from then on; here it is
computed for the agents registered before, from their stored facts, a thousand rows a transaction step (~0.1 ms
an agent: a million agents take a few minutes, once). Revoked agents are never searched, so they get none; facts
that no longer validate (none should) get none either and are found by words alone until re-registered.
"""

import json

import sqlalchemy as sa
from alembic import op
from pydantic import ValidationError

from guildnet.protocols.agentfacts import AgentFacts
from guildnet.registry.meaning import embed_facts

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    op.add_column("agents", sa.Column("embedding", sa.LargeBinary, nullable=True))
    conn = op.get_bind()
    select = sa.text("SELECT pk, facts FROM agents WHERE revoked = :no AND pk > :after ORDER BY pk LIMIT :n")
    update = sa.text("UPDATE agents SET embedding = :embedding WHERE pk = :pk")
    after = 0
    while rows := conn.execute(select, {"no": False, "after": after, "n": _BATCH}).all():
        vectors = []
        for pk, facts in rows:
            try:
                vectors.append({"pk": pk, "embedding": embed_facts(AgentFacts.model_validate(json.loads(facts)))})
            except ValidationError:
                continue
        if vectors:
            conn.execute(update, vectors)
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_column("agents", "embedding")
