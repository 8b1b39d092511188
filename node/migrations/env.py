"""Alembic environment: migrations run on the connection handed over by guildnet.node.db.migrate.

The node keeps its own version table, so a node and a registry may share one PostgreSQL database."""

from alembic import context

from guildnet.node.a2a.push_store import Base as PushBase
from guildnet.node.a2a.store import Base as TaskBase
from guildnet.node.db import VERSION_TABLE
from guildnet.node.delegation.heads import Base as HeadBase
from guildnet.node.flywheel.process_log import Base as ProcessBase

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=[TaskBase.metadata, ProcessBase.metadata, HeadBase.metadata,
                                                                 PushBase.metadata],
                  version_table=VERSION_TABLE, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
