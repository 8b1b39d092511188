"""The registry collects witnesses' cosignatures on its log's checkpoints, and serves the latest cosigned one.

**Collecting.** A background task looks at the log's head every ``cosign_interval`` seconds; when it grew, it
submits the new checkpoint to every configured witness at once (C2SP tlog-witness ``add-checkpoint``), each
with the consistency proof from the size *that* witness last cosigned. A witness that answers 409 names the
size it holds, and the registry retries once from there (a witness that was down, a registry that lost its
table, a replica that raced another). Each cosignature is verified against the witness's configured did:key
before it is stored (``witness_cosignatures``, one row per witness and tree size).

**Serving.** ``GET /v1/log/head`` then answers with the largest checkpoint that at least ``witness_quorum`` of
the configured witnesses (default: all) cosigned, the log's signature followed by their lines, so a client
holding the note can check the quorum itself (``protocols.witness.verify_witnessed``). Cosigning lags the tip
by at most about one interval plus the witnesses' answer time; in between, the head a client sees is that
last cosigned checkpoint, and ``tip`` in the answer says how far the log has grown beyond it. Until the first
checkpoint reaches the quorum, the plain signed head is served with no cosignatures: a client that requires
witnesses refuses it, one that does not sees what it saw before witnesses were configured.

Each replica of a PostgreSQL registry runs its own collector; witnesses serialise them (409), and the table
takes each witness's cosignature of a size once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from guildnet.protocols.merkle import Checkpoint, InvalidCheckpoint, sign_checkpoint
from guildnet.protocols.witness import (
    AddCheckpoint,
    Refusal,
    Witness,
    WitnessError,
    parse_cosignature_lines,
    parse_size_body,
    verify_cosignatures,
)

from .log import SignedHead, TransparencyLog
from .models import Base
from .store import RegistryStore

log = logging.getLogger(__name__)


class CosignatureRow(Base):
    """A configured witness's verified cosignature line on the checkpoint of one tree size (migration 0004)."""

    __tablename__ = "witness_cosignatures"

    witness: Mapped[str] = mapped_column(String(255), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, index=True)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    line: Mapped[str] = mapped_column(Text)
    cosigned_at: Mapped[int] = mapped_column(BigInteger)


_TABLE = CosignatureRow.__table__


@dataclass(frozen=True, slots=True)
class WitnessEndpoint:
    """A witness the registry submits its checkpoints to: where it answers, and who it is."""

    url: str
    witness: Witness

    @classmethod
    def parse(cls, spec: str) -> WitnessEndpoint:
        """``NAME,DID,URL`` (the witness's key name, its did:key, its submission prefix)."""
        parts = [part.strip() for part in spec.split(",")]
        if len(parts) != 3:
            raise WitnessError(f"{spec!r}: a witness is NAME,DID,URL")
        name, key, url = parts
        address = urlsplit(url)
        if address.scheme not in ("http", "https") or not address.hostname:
            raise WitnessError(f"{spec!r}: the witness URL is http(s)://host[:port][/prefix]")
        return cls(url.rstrip("/"), Witness(name, key))


def _insert(conn: Connection, values: dict[str, Any]) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(_TABLE).values(**values).on_conflict_do_nothing())


class CosignatureCollector:
    """Submits the log's new checkpoints to the witnesses and assembles the cosigned head."""

    def __init__(self, log_: TransparencyLog, store: RegistryStore, witnesses: Sequence[WitnessEndpoint],
                 *, quorum: int | None = None, interval: float = 1.0, timeout: float = 10.0) -> None:
        if not witnesses:
            raise WitnessError("a collector needs at least one witness")
        names = [w.witness.name for w in witnesses]
        if len(set(names)) != len(names):
            raise WitnessError("each configured witness needs its own name")
        self.quorum = len(witnesses) if quorum is None else quorum
        if not 1 <= self.quorum <= len(witnesses):
            raise WitnessError(f"a witness quorum of {quorum} is not between 1 and {len(witnesses)}")
        self.log = log_
        self.store = store
        self.witnesses = tuple(witnesses)
        self.interval = interval
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._cosigned: dict[str, int] = {}
        """Per witness, the size it last cosigned as far as this replica knows (409 answers correct it)."""
        self._served: tuple[int, str] | None = None

    async def start(self) -> None:
        """Learn what each witness cosigned before (the table), then follow the log in the background."""
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        rows = await self.store.read(lambda conn: conn.execute(
            select(_TABLE.c.witness, func.max(_TABLE.c.size)).group_by(_TABLE.c.witness)).all())
        self._cosigned = {str(name): int(size) for name, size in rows}
        self._task = asyncio.create_task(self._loop(), name="guildnet-registry-cosigning")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    async def _loop(self) -> None:
        while True:
            try:
                await self.collect()
            except Exception:
                log.exception("collecting cosignatures failed; retrying")
            await asyncio.sleep(self.interval)

    async def collect(self) -> None:
        """Submit the current head to every witness that has not cosigned it yet."""
        head = await self.log.head()
        waiting = [w for w in self.witnesses if self._cosigned.get(w.witness.name) != head.size]
        if waiting:
            await asyncio.gather(*(self._submit(endpoint, head) for endpoint in waiting))

    async def _submit(self, endpoint: WitnessEndpoint, head: SignedHead) -> None:
        name = endpoint.witness.name
        old = self._cosigned.get(name, 0)
        for _attempt in range(2):
            if old > head.size:
                log.error("witness %s holds size %d of this log, beyond our head %d: it saw a tree this replica "
                          "did not sign, or the log table lost leaves", name, old, head.size)
                return
            _old, _new, proof = await self.log.consistency(old, head.size)
            body = AddCheckpoint(old, tuple(proof), head.checkpoint).encode()
            try:
                async with self._session_().post(endpoint.url + "/add-checkpoint", data=body) as response:
                    answer = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("witness %s unreachable: %s", name, exc)
                return
            if status == 409:
                try:
                    old = self._cosigned[name] = parse_size_body(answer)
                except Refusal:
                    log.warning("witness %s answered 409 without a size", name)
                    return
                continue
            if status != 200:
                log.warning("witness %s refused the checkpoint of size %d: %d %s", name, head.size, status,
                            answer[:300].decode("utf-8", "replace").strip())
                return
            await self._store(endpoint.witness, head, answer)
            return

    def _session_(self) -> aiohttp.ClientSession:
        assert self._session is not None, "submit only while running()"
        return self._session

    async def _store(self, witness: Witness, head: SignedHead, answer: bytes) -> None:
        try:
            lines = parse_cosignature_lines(answer)
            found = verify_cosignatures(head.checkpoint + lines, [witness])
        except (WitnessError, InvalidCheckpoint) as exc:
            log.warning("witness %s answered with cosignatures that do not verify: %s", witness.name, exc)
            return
        if not found:
            log.warning("witness %s answered without a cosignature by its configured key", witness.name)
            return
        mine = [line for line in lines.splitlines(keepends=True) if line.split(" ")[1] == witness.name]
        values = {"witness": witness.name, "size": head.size, "root": head.root, "line": "".join(mine),
                  "cosigned_at": found[0].timestamp}
        await self.store.write(partial(_insert, values=values))
        self._cosigned[witness.name] = head.size

    async def served_head(self) -> dict[str, Any]:
        """``GET /v1/log/head``: the largest checkpoint cosigned by the quorum, with the lines, or the plain head."""
        tip = await self.log.head()
        names = [w.witness.name for w in self.witnesses]

        def query(conn: Connection) -> list[Any]:
            best = (select(_TABLE.c.size).where(_TABLE.c.witness.in_(names)).group_by(_TABLE.c.size)
                    .having(func.count() >= self.quorum).order_by(_TABLE.c.size.desc()).limit(1)).scalar_subquery()
            return list(conn.execute(select(_TABLE.c.witness, _TABLE.c.size, _TABLE.c.root, _TABLE.c.line)
                                     .where(_TABLE.c.size == best, _TABLE.c.witness.in_(names))).all())

        rows = await self.store.read(query)
        body = tip.to_json()
        body.update(tip=tip.size, witnesses=[])
        if not rows:
            return body
        size, root = int(rows[0].size), bytes(rows[0].root)
        order = {name: i for i, name in enumerate(names)}
        rows.sort(key=lambda row: order[row.witness])
        cached = self._served
        if cached is None or cached[0] != size:
            cached = self._served = (size, sign_checkpoint(Checkpoint(self.log.origin, size, root), self.log.key))
        body.update(size=size, root=root.hex(), checkpoint=cached[1] + "".join(row.line for row in rows),
                    witnesses=[row.witness for row in rows])
        return body
