"""Following the change feed: the in-process indexes of a registry process (vectors, words) each hold the position
of the last change they applied, and :func:`catch_up` brings one to a later position by reading the agents that
were registered, updated or revoked since, as they are now. A replica learns of another's writes the same way,
and applying a change twice is harmless."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import TextClause
from sqlalchemy.engine import Connection

CATCH_UP_ROWS = 5_000
"""Changes read per statement."""


class Follower(Protocol):
    position: int

    @property
    def changed(self) -> TextClause:
        """Rows of (seq, the index's columns of the agent now) for the changes after ``:after`` up to ``:upto``
        (registered, updated, revoked), in seq order, at most ``:limit``."""

    def follow(self, start: int, end: int, rows: Sequence[Any]) -> bool:
        """Apply ``rows`` and move from ``start`` to ``end``; False, and nothing done, when another catch-up moved
        the index meanwhile."""


def catch_up(conn: Connection, index: Follower, upto: int) -> None:
    """Bring ``index`` to change ``upto``."""
    while index.position < upto:
        start = index.position
        rows = conn.execute(index.changed, {"after": start, "upto": upto, "limit": CATCH_UP_ROWS}).all()
        end = upto if len(rows) < CATCH_UP_ROWS else int(rows[-1][0])
        index.follow(start, end, rows)
