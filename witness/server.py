"""A C2SP ``tlog-witness`` service on aiohttp: it follows the logs it is configured with and cosigns their
checkpoints when, and only when, each extends the last one it cosigned.

Routes: ``POST /add-checkpoint`` (the protocol; its answers are plain text, as the spec gives them: the
cosignature line, ``409`` with ``text/x.tlog.size`` and the size this witness holds, or another status with a
one-line reason), ``GET /<sha256(origin) in hex>/checkpoint`` (the latest checkpoint it cosigned for that log,
the spec's monitoring read), ``GET /`` (who this witness is: name, did:key, verifier key, the logs it follows)
and ``GET /healthz``. The witness trusts no one who calls it: a request is only as good as the log signature
and the consistency proof it carries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from guildnet.protocols import keyfile
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.witness import (
    MAX_REQUEST_BYTES,
    SIZE_CONTENT_TYPE,
    Refusal,
    Witness,
    WitnessedLog,
    WitnessError,
    check_key_name,
    cosign,
    parse_add_checkpoint,
    size_body,
)

from .store import WitnessStore

log = logging.getLogger(__name__)


@dataclass
class WitnessConfig:
    name: str
    """The witness's key name in its cosignature lines, e.g. ``witness.example.org/w1`` (no spaces, no '+')."""
    key_path: str | Path
    """Its Ed25519 key file, created 0600 if missing. One key per witness name: cosignature/v1 does not sign
    the name, so a key shared by two names would make their cosignatures interchangeable."""
    db_path: str | Path
    """Its SQLite file: the latest checkpoint it cosigned per log."""
    logs: tuple[WitnessedLog, ...]
    """The logs it follows (origin and log key); checkpoints of any other origin get 404."""
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        check_key_name(self.name, "a witness name")
        origins = [entry.origin for entry in self.logs]
        if not origins or len(set(origins)) != len(origins):
            raise WitnessError("a witness follows at least one log, each origin once")


@dataclass
class WitnessState:
    config: WitnessConfig
    key: SigningKey
    store: WitnessStore
    logs: dict[str, WitnessedLog]
    worker: ThreadPoolExecutor

    @property
    def identity(self) -> Witness:
        return Witness(self.config.name, self.key.did)

    def cosign(self, body: str) -> tuple[str, int]:
        at = int(self.config.clock())
        return cosign(body, self.key, self.config.name, at), at


STATE = web.AppKey("witness", WitnessState)


def _text(status: int, text: str, content_type: str = "text/plain") -> web.Response:
    return web.Response(status=status, text=text if text.endswith("\n") else text + "\n", content_type=content_type)


async def add_checkpoint(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
        return _text(413, f"an add-checkpoint body is at most {MAX_REQUEST_BYTES} bytes")
    try:
        submitted = parse_add_checkpoint(await request.read())
        lines = await asyncio.get_running_loop().run_in_executor(
            state.worker, state.store.add_checkpoint, submitted, state.logs, state.cosign)
    except Refusal as refusal:
        if refusal.status == 409 and refusal.size is not None:
            return web.Response(status=409, body=size_body(refusal.size), content_type=SIZE_CONTENT_TYPE)
        if refusal.status in (403, 422):
            log.warning("refused a checkpoint (%d): %s", refusal.status, refusal.detail)
        return _text(refusal.status, refusal.detail)
    log.info("cosigned %s", submitted.note.split("\n", 2)[:2])
    return _text(200, lines)


async def monitored_checkpoint(request: web.Request) -> web.Response:
    state = request.app[STATE]
    wanted = request.match_info["origin_hash"]
    for origin in state.logs:
        if hashlib.sha256(origin.encode()).hexdigest() == wanted:
            note = await asyncio.get_running_loop().run_in_executor(state.worker, state.store.latest_note, origin)
            if note is not None:
                return _text(200, note)
    return _text(404, "this witness has cosigned no checkpoint of that log")


async def about(request: web.Request) -> web.Response:
    state = request.app[STATE]
    witness = state.identity
    return web.json_response({"name": witness.name, "key": witness.key, "vkey": witness.vkey(),
                              "logs": [{"origin": o, "key": entry.key} for o, entry in state.logs.items()]})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(config: WitnessConfig) -> web.Application:
    """The witness app; its key and database open when it starts (``cleanup_ctx``)."""
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        worker = ThreadPoolExecutor(1, thread_name_prefix="guildnet-witness")
        loop = asyncio.get_running_loop()
        key = await loop.run_in_executor(worker, keyfile.load_or_create, config.key_path)
        store = WitnessStore(config.db_path)
        await loop.run_in_executor(worker, store.migrate)
        app[STATE] = WitnessState(config, key, store, {entry.origin: entry for entry in config.logs}, worker)
        log.info("witness %s (%s) follows %d log(s); verifier key %s", config.name, key.did, len(config.logs),
                 app[STATE].identity.vkey())
        try:
            yield
        finally:
            await loop.run_in_executor(worker, store.close)
            worker.shutdown(wait=True)

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/add-checkpoint", add_checkpoint)
    app.router.add_get("/{origin_hash:[0-9a-f]{64}}/checkpoint", monitored_checkpoint)
    app.router.add_get("/", about)
    app.router.add_get("/healthz", healthz)
    return app
