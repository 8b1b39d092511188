"""A short pending list for the text-search index (PostgreSQL): ``gin_pending_list_limit = 64`` kB on
``ix_agents_search``, and the entries already pending merged into the index. SQLite: nothing to do (FTS5).

Revision ID: 0011
Revises: 0010

A GIN index with ``fastupdate`` (PostgreSQL's default) appends new rows' entries to an unsorted pending list and
merges them into the index only when the list outgrows ``gin_pending_list_limit`` (4 MB by default) or a
vacuum runs; autovacuum's insert threshold at 1M agents is 200,000 inserts. Every text search reads the whole
list: with 4 MB (~9,000 registrations' entries) a page by a rare word cost PostgreSQL ~2 ms more CPU (3.9 ms
instead of 2.2 ms at 200k agents), so a registry that had registered a few thousand agents searched about half as
fast as a freshly prefilled one. At 64 kB (8 pages, ~150 registrations) the list costs a search ~0.04 ms, and
an insert's share of the merges costs about what the 4 MB list's did (0.13-0.18 ms of PostgreSQL CPU per agents
row, 16 per transaction; ``fastupdate = off`` cost 0.23-0.26 ms). Results are the same either way: a search
reads the list and the index alike.
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
