"""A short pending list for the text-search index (PostgreSQL): ``gin_pending_list_limit = 64`` kB on
``ix_agents_search``, and the entries already pending merged into the index. SQLite: nothing to do (FTS5).

Revision ID: 0011
Revises: 0010

A GIN index with ``fastupdate`` (PostgreSQL's default) appends new rows' entries to an unsorted pending list and
merges them into the index only when the list outgrows ``gin_pending_list_limit`` (4 MB by default) or a
vacuum runs; autovacuum's insert threshold at 1M agents is 200,000 inserts. Every text search reads the whole
list, ~4.3 us of PostgreSQL CPU per 8 kB page: at 1M agents with 428 pages pending (5,000 registrations after a
prefill) a page of a rare word cost PostgreSQL 4.7 ms of CPU, 3.0 ms with the list merged. At 64 kB (8 pages, ~150
registrations) the list costs a search ~0.04 ms; merging it that often costs an agents insert ~0.03-0.05 ms more
PostgreSQL CPU than merging 4 MB at a time (0.19 vs 0.16 ms at 200k agents, 0.23 vs 0.18 ms at 1M, 16 inserts
per transaction; ``fastupdate = off``: ~0.26 ms at 200k), and no insert stalls ~0.2 s merging 4 MB. Results
are the same either way: a search reads the list and the index alike.
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

PENDING_LIST_KB = 64
"""The smallest ``gin_pending_list_limit`` PostgreSQL accepts."""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # what is pending now (up to 4 MB, ~1 s at most) is merged first, under a lock that searches and writes do
    # not wait for; the limit (for later inserts) takes an exclusive lock on the index, held to the commit
    op.execute("SELECT gin_clean_pending_list('ix_agents_search'::regclass)")
    op.execute(f"ALTER INDEX ix_agents_search SET (gin_pending_list_limit = {PENDING_LIST_KB})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER INDEX ix_agents_search RESET (gin_pending_list_limit)")
