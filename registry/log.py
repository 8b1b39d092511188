"""The registry's transparency log: leaves in the ``log_entries`` table, an RFC 9162 tree over them, signed heads.

**Writes.** Every registration, update, rotation, revocation and accepted receipt appends one leaf, in the
transaction of the write itself (:func:`append_leaf`, one ``INSERT``): a refused write rolls its leaf back with
everything else, an accepted one is never acknowledged without its leaf. Indices are dense and in commit order:
on PostgreSQL the store takes the advisory lock that already orders the change feed before appending, on
SQLite the database has one writer. The leaf is ``{"agent", "jws", "kind"}`` as RFC 8785 canonical JSON, where
``jws`` is the signed write exactly as the registry received it and ``kind`` its action (``register``,
``rotate``, ``revoke``, ``receipt``): anyone holding the entries can re-verify every signature, and a client can
rebuild a registration's leaf from the record it was served, without asking for it.

**Reads.** :class:`TransparencyLog` keeps a :class:`~guildnet.protocols.merkle.MerkleTree` in memory (hashes of
full 256-leaf tiles and above, plus the last tile) and reads leaf hashes below the tile height from the table.
It never trusts its own memory for the size: before each answer it appends whatever leaves the table has beyond
the tree (one indexed range query, usually empty), so a replica answers for leaves another replica wrote. The
root at the current size costs O(log n) hashes and no table scan. Tree reads and catch-up run one at a time under
an ``asyncio.Lock``, on the store's reader (a reader thread on SQLite, ``run_sync`` on PostgreSQL).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection

from guildnet.protocols.keys import SigningKey
from guildnet.protocols.merkle import Checkpoint, MerkleTree, leaf_hash, sign_checkpoint
from guildnet.protocols.transparency import leaf_data, origin_for

T = TypeVar("T")
Reader = Callable[[Callable[[Connection], Any]], Awaitable[Any]]

MAX_ENTRIES = 256
"""Most entries one ``GET /v1/log/entries`` returns."""
_CATCH_UP_CHUNK = 10_000

# One statement per write: the index is the next one after the largest (an index lookup, never a scan), and the
# append lock (PostgreSQL) or the single writer (SQLite) makes it unique and gap-free.
_APPEND = text("INSERT INTO log_entries (idx, kind, agent_id, data, leaf_hash) "
               "VALUES ((SELECT COALESCE(MAX(idx), -1) + 1 FROM log_entries), :kind, :agent, :data, :hash) "
               "RETURNING idx")
_LEAVES_FROM = text("SELECT idx, leaf_hash FROM log_entries WHERE idx >= :start ORDER BY idx LIMIT :limit")
_LEAF_RANGE = text("SELECT leaf_hash FROM log_entries WHERE idx >= :start AND idx < :end ORDER BY idx")
_BY_HASH = text("SELECT MIN(idx) FROM log_entries WHERE leaf_hash = :hash")
_ENTRIES = text("SELECT idx, kind, agent_id, data, leaf_hash FROM log_entries "
                "WHERE idx >= :start AND idx < :end ORDER BY idx")


class LogRangeError(ValueError):
    """A requested index or tree size the log does not have (the API answers 400)."""


class LogCorrupted(RuntimeError):
    """The leaf table has a gap or a malformed hash: someone changed the table behind the registry's back."""


def append_leaf(conn: Connection, kind: str, agent_id: str, token: str) -> int:
    """Append one leaf inside the caller's transaction (the caller holds the append lock); return its index."""
    data = leaf_data(kind, agent_id, token)
    return int(conn.execute(_APPEND, {"kind": kind, "agent": agent_id, "data": data.decode(),
                                      "hash": leaf_hash(data)}).scalar_one())


@dataclass(frozen=True, slots=True)
class SignedHead:
    origin: str
    size: int
    root: bytes
    checkpoint: str
    key: str

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "size": self.size, "root": self.root.hex(), "checkpoint": self.checkpoint,
                "key": self.key}


@dataclass(frozen=True, slots=True)
class LogEntry:
    index: int
    kind: str
    agent_id: str
    data: str
    leaf_hash: bytes

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "agent": self.agent_id, "data": self.data,
                "leaf_hash": self.leaf_hash.hex()}


class TransparencyLog:
    def __init__(self, key: SigningKey, read: Reader) -> None:
        self.key = key
        self.origin = origin_for(key.did)
        self._read = read
        self._tree = MerkleTree(self._read_leaves)
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._signed: SignedHead | None = None

    def _read_leaves(self, start: int, end: int) -> Sequence[bytes]:
        assert self._conn is not None, "leaf reads happen only inside TransparencyLog._locked"
        return [bytes(h) for h in self._conn.execute(_LEAF_RANGE, {"start": start, "end": end}).scalars()]

    def _catch_up(self, conn: Connection) -> None:
        while True:
            rows = conn.execute(_LEAVES_FROM, {"start": self._tree.size, "limit": _CATCH_UP_CHUNK}).all()
            for idx, value in rows:
                if idx != self._tree.size or len(value) != 32:
                    raise LogCorrupted(f"log_entries has no leaf {self._tree.size} (next stored: {idx})")
                self._tree.append(bytes(value))
            if len(rows) < _CATCH_UP_CHUNK:
                return

    async def _locked(self, work: Callable[[MerkleTree, Connection], T]) -> T:
        """Run ``work`` on a tree caught up with the table, one operation at a time."""
        def run(conn: Connection) -> T:
            self._conn = conn
            try:
                self._catch_up(conn)
                return work(self._tree, conn)
            finally:
                self._conn = None

        async with self._lock:
            result: T = await self._read(run)
            return result

    async def head(self) -> SignedHead:
        size, root = await self._locked(lambda tree, _conn: (tree.size, tree.root()))
        signed = self._signed
        if signed is None or signed.size != size:
            note = sign_checkpoint(Checkpoint(self.origin, size, root), self.key)
            signed = self._signed = SignedHead(self.origin, size, root, note, self.key.did)
        return signed

    @staticmethod
    def _size(tree: MerkleTree, size: int | None) -> int:
        if size is None:
            return int(tree.size)
        if not 0 <= size <= tree.size:
            raise LogRangeError(f"tree size {size} is outside 0..{tree.size}")
        return size

    async def inclusion(self, index: int | None, size: int | None, *,
                        leaf: bytes | None = None) -> tuple[int, int, bytes, list[bytes]]:
        """(index, size, leaf hash, audit path) for a leaf given by index or by hash."""
        def work(tree: MerkleTree, conn: Connection) -> tuple[int, int, bytes, list[bytes]]:
            n = self._size(tree, size)
            i = index
            if leaf is not None:
                found = conn.execute(_BY_HASH, {"hash": leaf}).scalar()
                if found is None or found >= n:
                    raise LogRangeError(f"no leaf with hash {leaf.hex()} in the tree of size {n}")
                i = int(found)
            assert i is not None
            if not 0 <= i < n:
                raise LogRangeError(f"leaf index {i} is outside 0..{n - 1}")
            return i, n, bytes(self._read_leaves(i, i + 1)[0]), tree.inclusion_proof(i, n)

        return await self._locked(work)

    async def consistency(self, old: int, new: int | None) -> tuple[int, int, list[bytes]]:
        def work(tree: MerkleTree, _conn: Connection) -> tuple[int, int, list[bytes]]:
            n = self._size(tree, new)
            if not 0 <= old <= n:
                raise LogRangeError(f"old size {old} is outside 0..{n}")
            return old, n, tree.consistency_proof(old, n)

        return await self._locked(work)

    async def entries(self, start: int, end: int) -> list[LogEntry]:
        if start < 0 or end <= start or end - start > MAX_ENTRIES:
            raise LogRangeError(f"need 0 <= start < end and at most {MAX_ENTRIES} entries per request")
        rows = await self._read(lambda conn: conn.execute(_ENTRIES, {"start": start, "end": end}).all())
        return [LogEntry(int(r[0]), r[1], r[2], r[3], bytes(r[4])) for r in rows]

    async def size(self) -> int:
        """The log's size now (the tree caught up with the table; at start-up this loads it)."""
        size: int = await self._locked(lambda tree, _conn: tree.size)
        return size


def default_key_path(db_url: str) -> Path:
    """Next to the SQLite file, else ``./registry.key``."""
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / "registry.key"
    return Path("registry.key")


