"""Search by meaning: every stored vector recomputed, because registry search now embeds with its own model
(``guildnet.embedding.search_embedder``: token vectors fitted to all-MiniLM-L6-v2's sentence vectors): a vector
of the old model has the same width as one of the new, so it would be compared with new queries and rank at
random.

Revision ID: 0012
Revises: 0011

The model ships inside the package, so it changes only with the code, and every such change comes with a
migration like this one (the model id, ``guildnet.embedding.search_embedder().model_id``, names the weights).
Like 0009 it reads the stored facts a thousand at a time (~0.1 ms an agent: a million agents take a few
minutes, once). Downgrading recomputes them with the model the older code embeds queries with
(``default_embedder``).
"""

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

from guildnet.embedding import default_embedder
from guildnet.registry.meaning import STORED_DTYPE, agent_text, embed_facts

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    _reembed(embed_facts)


def downgrade() -> None:
    _reembed(lambda facts: default_embedder().embed([agent_text(facts)])[0].astype(STORED_DTYPE).tobytes())


def _reembed(embed: Callable[[dict[str, Any]], bytes]) -> None:
    conn = op.get_bind()
    select = sa.text("SELECT a.pk, a.facts FROM agents a JOIN agent_vectors v ON v.agent_pk = a.pk "
                     "WHERE a.pk > :after ORDER BY a.pk LIMIT :n")
    update = sa.text("UPDATE agent_vectors SET embedding = :embedding WHERE agent_pk = :pk")
    after = 0
    while rows := conn.execute(select, {"after": after, "n": _BATCH}).all():
        vectors = []
        for pk, facts in rows:
            document = json.loads(facts)
            if isinstance(document, dict):
                vectors.append({"pk": pk, "embedding": embed(document)})
        if vectors:
            conn.execute(update, vectors)
        after = rows[-1][0]
