"""What a witness remembers: the latest checkpoint it cosigned per log, in its own SQLite file.

tlog-witness asks two things of this state. It is durable before the witness answers (a witness that forgot
what it cosigned could be walked back to a fork), so the file runs with ``synchronous=FULL``. And checking the
old size against it and storing the new checkpoint are one atomic step, or two requests racing (sizes N and
N+K) could leave the witness at N after it cosigned N+K: each request runs in one ``BEGIN IMMEDIATE``
transaction (SQLite's write lock is taken before the read), so even two witness processes on one file take
turns. The schema comes from the Alembic migrations in ``witness/migrations``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, create_engine, event, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from guildnet import storage
from guildnet.protocols.merkle import Checkpoint, split_note
from guildnet.protocols.witness import AddCheckpoint, WitnessedLog, check_add_checkpoint

_MIGRATIONS = Path(__file__).with_name("migrations")


class Base(DeclarativeBase):
    pass


class WitnessedCheckpointRow(Base):
    """The checkpoint this witness last cosigned for ``origin``: the note as submitted plus its cosignature."""

    __tablename__ = "witnessed_checkpoints"

    origin: Mapped[str] = mapped_column(String(512), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    cosigned_at: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))


Cosigner = Callable[[str], tuple[str, int]]
"""Given a checkpoint body, the witness's cosignature line(s) and the time they carry."""


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event below says how a transaction starts
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class WitnessStore:
    """The witness's SQLite file; its methods block (the service runs them on a worker thread)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.engine: Engine = create_engine(f"sqlite+pysqlite:///{self.path}",
                                            connect_args={"check_same_thread": False})
        event.listen(self.engine, "connect", _pragmas)
        event.listen(self.engine, "begin", _begin_immediate)
        self._lock = threading.Lock()

    def migrate(self) -> None:
        """Create or upgrade the schema (idempotent)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.engine.begin() as connection:
            storage.upgrade(connection, _MIGRATIONS)

    def close(self) -> None:
        self.engine.dispose()

    def add_checkpoint(self, request: AddCheckpoint, logs: Mapping[str, WitnessedLog], cosigner: Cosigner) -> str:
        """Check ``request`` against the stored checkpoint, store the new one with its cosignature and return the
        cosignature line(s), all in one transaction; a :class:`~guildnet.protocols.witness.Refusal` changes
        nothing."""
        with self._lock, self.engine.begin() as conn:
            def held(origin: str) -> Checkpoint | None:
                row = _row(conn, origin)
                return None if row is None else Checkpoint(origin, row.size, bytes(row.root))

            checkpoint = check_add_checkpoint(request, logs, held)
            lines, at = cosigner(split_note(request.note)[0])
            values = {"size": checkpoint.size, "root": checkpoint.root, "note": request.note + lines,
                      "cosigned_at": at}
            row = WitnessedCheckpointRow
            if not conn.execute(update(row).where(row.origin == checkpoint.origin).values(**values)).rowcount:
                conn.execute(insert(row).values(origin=checkpoint.origin, **values))
            return lines

    def latest_note(self, origin: str) -> str | None:
        """The checkpoint last cosigned for ``origin``, with the log's signature and this witness's cosignature."""
        with self.engine.connect() as conn:
            row = _row(conn, origin)
            return None if row is None else str(row.note)


def _row(conn: Connection, origin: str) -> Any:
    row = WitnessedCheckpointRow
    return conn.execute(select(row.size, row.root, row.note).where(row.origin == origin)).first()
