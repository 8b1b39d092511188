"""``agents.key_events``: each agent's signed key history, served with its record.

Revision ID: 0004
Revises: 0003

The history is a JSON array of compact JWS key events (inception, then rotations; see
``guildnet.protocols.keyhistory``), written with the registration or rotation that carried each event and
spliced into the API's JSON as stored, like the facts. Agents registered before this revision have the empty
history: their key is their id, and they can never rotate.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("key_events", sa.Text(), nullable=False, server_default="[]"))


def downgrade() -> None:
    op.drop_column("agents", "key_events")
