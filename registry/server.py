"""The registry's HTTP API on aiohttp.

Routes (see ``/openapi.json``): signed writes under ``/v1/agents`` and ``/v1/receipts`` (JWS bodies,
``application/jose``) and batches of registrations (``/v1/registrations``, JSON), search and lookup, reputation,
the transparency log under ``/v1/log``, and the ``/v1/watch`` WebSocket change stream. Every refusal is an RFC 9457
problem+json response and leaves the store as it was (the store's transactions guarantee that); a batch answers
each of its writes in its own item, a refusal as a problem details object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import WSMsgType, web
from sqlalchemy import text

from guildnet.protocols import bounded_json, keyfile
from guildnet.protocols.signed_write import SignedWrite, WriteRefused, open_write

from .cosigning import CosignatureCollector
from .db import create_engine, migrate
from .domain_lookup import DomainResolver
from .domains import DomainChecker, claimed_domain
from .explorer import add_explorer_routes
from .log import LogCorrupted, LogRangeError, TransparencyLog, default_key_path
from .metrics import RegistryMetrics
from .openapi import openapi_document
from .problems import problem, problem_body
from .ratelimit import RateLimited, WriteLimits
from .records import MAX_REGISTRATIONS, parse_receipt
from .state import (
    CONFIG,
    COSIGNING,
    DOMAINS,
    HUB,
    LIMITS,
    LOG,
    METRICS,
    REPUTATION,
    STORE,
    VERIFIER,
    WATCHERS,
    RegistryConfig,
)
from .store import BadQuery, NotFound, RegistryStore, WriteResult, query_int
from .trust import ReputationService, Snapshot, inputs_query, report, revoked_query, summaries
from .verifier import RegistrationVerifier
from .watch import ChangeHub

__all__ = ["CONFIG", "HUB", "LIMITS", "LOG", "METRICS", "REPUTATION", "STORE", "RegistryConfig", "create_app"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
MAX_BATCH_AGENTS = 64
"""Agents per ``GET /v1/reputation`` (64 did:key ids fit well within a request line)."""
JOSE_TYPES = ("application/jose", "application/jose+json")
VERSION = "0.1.0"


READY_TIMEOUT = 2.0


@web.middleware
async def problem_middleware(request: web.Request,
                             handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    if "\x00" in request.path or any("\x00" in key or "\x00" in value for key, value in request.query.items()):
        return problem(400, "Bad query", "the path and query may not contain U+0000")
    try:
        return await handler(request)
    except WriteRefused as exc:
        return problem(exc.status, exc.title, exc.detail)
    except RateLimited as exc:
        response = problem(*_too_many_writes(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except NotFound as exc:
        return problem(404, "Not Found", f"no agent with id {exc.args[0]!r}")
    except (BadQuery, LogRangeError) as exc:
        return problem(400, "Bad query", str(exc))
    except LogCorrupted:
        log.exception("transparency log table is inconsistent")
        return problem(500, "Log unavailable", "the registry's log table is inconsistent; nothing was changed")
    except web.HTTPRequestEntityTooLarge:
        return problem(413, "Body too large", f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return problem(exc.status, exc.reason, exc.text or exc.reason)
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal error", "the registry could not complete the request; nothing was changed")


def _too_many_writes(exc: RateLimited) -> tuple[int, str, str]:
    return 429, "Too many writes", f"this {exc.scope} may send {exc.limit} signed writes; retry in {exc.retry_after} s"


async def _read_signed_write(request: web.Request) -> str:
    if request.content_type not in JOSE_TYPES:
        raise web.HTTPUnsupportedMediaType(
            text=f"signed writes are compact JWS with Content-Type application/jose (got {request.content_type})")
    try:
        return (await _read_body(request)).decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise WriteRefused("a compact JWS is ASCII") from exc


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=request.content_length)
    try:
        async with asyncio.timeout(request.app[CONFIG].body_timeout):
            return await request.read()
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout(text="the request body did not arrive in time") from exc


def _write_body(result: WriteResult) -> dict[str, object]:
    body: dict[str, object] = {"id": result.agent_id, "version": result.version, "seq": result.seq}
    if result.log_index is not None:
        body["log_index"] = result.log_index
    return body


def _write_response(result: WriteResult) -> web.Response:
    return web.json_response(_write_body(result))


async def _open(request: web.Request) -> tuple[RegistryStore, SignedWrite]:
    """Read and verify a signed write, within the sender's address and key budgets."""
    config = request.app[CONFIG]
    limits = request.app[LIMITS]
    await limits.check_address(request.remote or "unknown")
    token = await _read_signed_write(request)
    write = open_write(token, now=config.clock(), window=config.clock_window)
    await limits.check_key(write.signer)
    return request.app[STORE], write


async def register(request: web.Request) -> web.Response:
    await request.app[LIMITS].check_address(request.remote or "unknown")
    result, answer = await _register_one(request.app, await _read_signed_write(request))
    return web.json_response(answer, status=201 if result.created else 200)


async def register_many(request: web.Request) -> web.Response:
    """Several registrations in one request (a node publishing its agents): each is the signed write
    ``POST /v1/agents`` takes, checked, stored and logged exactly as it would be alone, and answered in its
    own item, in order: what one request costs in HTTP and hand-offs is shared, nothing else is."""
    limits, address = request.app[LIMITS], request.remote or "unknown"
    await limits.check_address(address)  # before the body is read, as for one write: a flood costs no parsing
    tokens = await _read_registrations(request)
    if len(tokens) > 1:
        await limits.check_address(address, len(tokens) - 1)
    answers = await asyncio.gather(*(_register_item(request.app, token) for token in tokens))
    for status, _ in answers:
        request.app[METRICS].count_write("register", status, in_batch=True)
    return web.json_response({"results": [answer for _, answer in answers]})


async def _register_item(app: web.Application, token: str) -> tuple[int, dict[str, object]]:
    """One registration of a batch: its status and answer, or its refusal as a problem details object."""
    try:
        result, answer = await _register_one(app, token)
    except WriteRefused as exc:
        return exc.status, problem_body(exc.status, exc.title, exc.detail)
    except RateLimited as exc:
        return 429, problem_body(*_too_many_writes(exc), retry_after=exc.retry_after)
    except Exception:
        log.exception("unhandled error on a registration of a batch")
        return 500, problem_body(500, "Internal error", "the registry could not complete this registration; it "
                                                        "was not stored")
    status = 201 if result.created else 200
    return status, {"status": status, **answer}


async def _register_one(app: web.Application, token: str) -> tuple[WriteResult, dict[str, object]]:
    """Check, store and log one registration (alone or of a batch): its result and the answer that says it, with
    what the registry found of a domain the organisation claims."""
    config = app[CONFIG]
    write, registration = await app[VERIFIER].open(token, now=config.clock(), window=config.clock_window)
    await app[LIMITS].check_key(write.signer)
    result = await app[STORE].register(write, registration)
    answer = _write_body(result)
    claim = claimed_domain(write)  # the registration stands either way; the answer says what the registry found
    if claim is not None:
        try:
            answer["domain"] = (await app[DOMAINS].at_registration(*claim)).to_json()
        except Exception:  # the registration is committed: say so, and check the domain on the schedule
            log.exception("could not check the domain %s of organisation %s at registration", claim[1], claim[0])
    return result, answer


async def _read_registrations(request: web.Request) -> list[str]:
    """The body of ``POST /v1/registrations``: ``{"registrations": [compact JWS, ...]}``, 1 to
    :data:`MAX_REGISTRATIONS` of them, within the body limit of any write."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(
            text=f"a batch of registrations is a JSON object with Content-Type application/json "
                 f"(got {request.content_type})")
    body = await _read_body(request)
    try:
        batch = bounded_json.loads(body)
    except ValueError as exc:  # malformed, undecodable, a repeated key, too deep
        raise WriteRefused('the body must be a JSON object {"registrations": [compact JWS, ...]}') from exc
    # a member this release would ignore could be one a later release honours (all or nothing, say): refused
    if not isinstance(batch, dict) or set(batch) != {"registrations"}:
        raise WriteRefused('the body must be a JSON object {"registrations": [compact JWS, ...]}, and nothing '
                           "else")
    tokens = batch["registrations"]
    if (not isinstance(tokens, list) or not 1 <= len(tokens) <= MAX_REGISTRATIONS
            or not all(isinstance(t, str) for t in tokens)):
        raise WriteRefused(f"'registrations' must list 1 to {MAX_REGISTRATIONS} compact JWS strings")
    return [token.strip() for token in tokens]  # as a write alone, whose body is stripped


async def heartbeat(request: web.Request) -> web.Response:
    store, write = await _open(request)
    return _write_response(await store.heartbeat(request.match_info["agent_id"], write))


async def node_heartbeat(request: web.Request) -> web.Response:
    store, write = await _open(request)
    result = await store.node_heartbeat(write)
    return web.json_response({"live": result.live, "missing": result.missing, "seq": result.seq})


async def revoke(request: web.Request) -> web.Response:
    store, write = await _open(request)
    return _write_response(await store.revoke(request.match_info["agent_id"], write))


async def withdraw(request: web.Request) -> web.Response:
    store, write = await _open(request)
    return _write_response(await store.withdraw(request.match_info["agent_id"], write))


async def rotate(request: web.Request) -> web.Response:
    store, write = await _open(request)
    return _write_response(await store.rotate(request.match_info["agent_id"], write,
                                              window=request.app[CONFIG].clock_window))


async def submit_receipt(request: web.Request) -> web.Response:
    store, write = await _open(request)
    result = await store.submit_receipt(parse_receipt(write), write, admission=request.app[REPUTATION].admission())
    return web.json_response({"receipt_id": result.receipt_id, "log_index": result.log_index}, status=201)


def _reputation_snapshot(request: web.Request) -> Snapshot:
    """The scores both reputation endpoints answer from, or a 503 problem saying why there are none: no
    pre-trusted organisation configured (so none will come), or the first recompute still running (retry)."""
    service = request.app[REPUTATION]
    if not service.pretrusted:
        raise web.HTTPServiceUnavailable(
            reason="Reputation not configured",
            text="this registry names no pre-trusted organisations (--pretrusted), so it computes no trust")
    if service.current is None:
        raise web.HTTPServiceUnavailable(reason="Reputation not computed yet",
                                         text="the first recompute is still running; retry shortly")
    return service.current


async def reputation(request: web.Request) -> web.Response:
    agent_id = request.match_info["agent_id"]
    skill = _bounded(request.query.get("skill"), "skill", 64)
    store = request.app[STORE]
    record = await store.get(agent_id)  # 404 for an unknown agent
    snapshot = _reputation_snapshot(request)
    listed, by_org = await store.read(inputs_query(agent_id, skill, snapshot))
    return web.json_response(report(snapshot, agent_id, skill, listed, by_org, revoked=record.revoked))


async def reputations(request: web.Request) -> web.Response:
    """Scores of many agents for one skill in one request (a delegating node ranks all its candidates at once):
    the score, lower bound and evidence of each, from the current snapshot; unknown agents have no evidence."""
    skill = _bounded(request.query.get("skill"), "skill", 64)
    agents = list(dict.fromkeys(request.query.getall("agent", [])))
    if not agents or len(agents) > MAX_BATCH_AGENTS:
        raise BadQuery(f"give 1 to {MAX_BATCH_AGENTS} 'agent' parameters")
    for agent in agents:
        _bounded(agent, "agent", 256)
    snapshot = _reputation_snapshot(request)
    return web.json_response(summaries(snapshot, agents, skill, await request.app[STORE].read(revoked_query(agents))))


def _int_param(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return query_int(raw, name)


async def log_head(request: web.Request) -> web.Response:
    if COSIGNING in request.app:
        return web.json_response(await request.app[COSIGNING].served_head())
    return web.json_response((await request.app[LOG].head()).to_json())


async def log_inclusion(request: web.Request) -> web.Response:
    index = _int_param(request, "index")
    size = _int_param(request, "size")
    raw_hash = request.query.get("leaf_hash")
    leaf = None
    if raw_hash is not None:
        try:
            leaf = bytes.fromhex(raw_hash)
        except ValueError:
            leaf = b""
        if len(leaf) != 32:
            raise BadQuery("leaf_hash must be 64 hex digits")
    if (index is None) == (leaf is None):
        raise BadQuery("give exactly one of index and leaf_hash")
    found, tree_size, leaf_value, proof = await request.app[LOG].inclusion(index, size, leaf=leaf)
    return web.json_response({"index": found, "size": tree_size, "leaf_hash": leaf_value.hex(),
                              "proof": [p.hex() for p in proof]})


async def log_consistency(request: web.Request) -> web.Response:
    old = _int_param(request, "old")
    if old is None:
        raise BadQuery("old is required")
    old, new, proof = await request.app[LOG].consistency(old, _int_param(request, "new"))
    return web.json_response({"old": old, "new": new, "proof": [p.hex() for p in proof]})


async def log_entries(request: web.Request) -> web.Response:
    start = _int_param(request, "start", 0)
    assert start is not None
    end = _int_param(request, "end", start + 100)
    assert end is not None
    entries = await request.app[LOG].entries(start, end)
    return web.json_response({"entries": [e.to_json() for e in entries]})


async def get_agent(request: web.Request) -> web.Response:
    record = await request.app[STORE].get(request.match_info["agent_id"])
    return web.Response(text=record.to_json_text(), content_type="application/json")


def _bool_param(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise BadQuery(f"{name} must be true or false")


def _bounded(value: str | None, name: str, limit: int) -> str | None:
    if value is not None and len(value) > limit:
        raise BadQuery(f"{name} is longer than {limit} characters")
    return value or None


async def search(request: web.Request) -> web.Response:
    query = request.query
    raw_limit = query.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError as exc:
        raise BadQuery("limit must be an integer") from exc
    records, next_cursor, position = await request.app[STORE].search(
        skill=_bounded(query.get("skill"), "skill", 64), q=_bounded(query.get("q"), "q", 256),
        org=_bounded(query.get("org"), "org", 128), live=_bool_param(query.get("live"), "live"),
        limit=limit, cursor=_bounded(query.get("cursor"), "cursor", 512), match=query.get("match", "hybrid"))
    body = ('{"agents":[' + ",".join(r.to_json_text() for r in records) + '],"next":'
            + json.dumps(next_cursor) + ',"seq":' + str(position) + "}")
    return web.Response(text=body, content_type="application/json")


async def watch(request: web.Request) -> web.StreamResponse:
    since = query_int(request.query.get("since") or "0", "since")
    if since < 0:
        raise BadQuery("since must be >= 0")
    config, watchers, address = request.app[CONFIG], request.app[WATCHERS], request.remote or "unknown"
    refusal = None
    if watchers[address] >= config.max_watchers_per_ip:
        refusal = problem(429, "Too many watchers", f"one address may hold {config.max_watchers_per_ip} watch "
                          "connections; close one first (one connection carries every change)")
    elif watchers.total() >= config.max_watchers:
        refusal = problem(503, "Too many watchers", f"this replica serves {config.max_watchers} watch "
                          "connections at most; retry, or watch through another replica")
    if refusal is not None:
        refusal.headers["Retry-After"] = "5"
        return refusal
    ws = web.WebSocketResponse(heartbeat=30.0)
    await ws.prepare(request)
    hub = request.app[HUB]
    watchers[address] += 1

    async def pump() -> None:
        async for change in hub.subscribe(since):
            await ws.send_str(json.dumps(change.to_json(), separators=(",", ":")))

    sender = asyncio.create_task(pump())
    try:
        async for message in ws:  # the client sends nothing; this loop ends when it goes away
            if message.type == WSMsgType.ERROR:
                break
    finally:
        watchers[address] -= 1
        if not watchers[address]:
            del watchers[address]
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError):
            await sender
    return ws


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(VERSION))


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "watchers": request.app[HUB].watcher_count})


async def readyz(request: web.Request) -> web.Response:
    """Ready to serve: the database answers (within ``READY_TIMEOUT``). A load balancer drops a replica
    that says 503 here; ``/healthz`` only says the process is alive."""
    try:
        async with asyncio.timeout(READY_TIMEOUT), request.app[STORE].engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        reason = f"no answer within {READY_TIMEOUT:.0f} s" if isinstance(exc, TimeoutError) else type(exc).__name__
        return web.json_response({"status": "not ready", "reason": f"database unreachable: {reason}"}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    collected = request.app[METRICS]
    collected.watchers.set(request.app[HUB].watcher_count)
    collected.log_size.set(await request.app[LOG].size())
    return collected.response()


async def _sweeper(app: web.Application) -> None:
    store = app[STORE]
    interval = app[CONFIG].sweep_interval
    ticks = 0
    while True:
        await asyncio.sleep(interval)
        try:
            await store.sweep_liveness()
            ticks += 1
            if ticks % 60 == 0:
                await store.purge_nonces()
        except Exception:
            log.exception("liveness sweep failed; retrying")


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    engine = create_engine(config.db_url)
    await migrate(engine)
    hub: ChangeHub
    store = RegistryStore(engine, clock=config.clock, on_commit=lambda seq: hub.notify(seq))
    store.start()
    hub = ChangeHub(store, poll_interval=config.watch_poll_interval, queue_size=config.watch_queue_size)
    await hub.start()
    key = await asyncio.to_thread(keyfile.load_or_create, config.key_path or default_key_path(config.db_url))
    transparency = TransparencyLog(key, store.read)
    await transparency.size()  # load the tree now, not on the first request
    service = ReputationService(config.db_url, config.pretrusted_orgs, interval=config.reputation_interval,
                                log_size=transparency.size, clock=config.clock)
    await service.start()
    resolver = DomainResolver(config.domain_lookup)
    domains = DomainChecker(store, resolver, recheck_interval=config.domain_recheck_interval,
                            withdraw_after=config.domain_withdraw_after, clock=config.clock)
    domains.start()
    app[DOMAINS] = domains
    app[STORE] = store
    app[HUB] = hub
    app[LOG] = transparency
    app[REPUTATION] = service
    collector = None
    if config.witnesses:
        collector = app[COSIGNING] = CosignatureCollector(transparency, store, config.witnesses,
                                                          quorum=config.witness_quorum, interval=config.cosign_interval)
        await collector.start()
    sweeper = asyncio.create_task(_sweeper(app))
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        if collector is not None:
            await collector.stop()
        await domains.stop()
        await resolver.close()
        await service.stop()
        await hub.stop()
        await store.close()
        await engine.dispose()


async def _verifier(app: web.Application) -> AsyncIterator[None]:
    app[VERIFIER] = verifier = RegistrationVerifier(app[CONFIG].verify_workers)
    try:
        yield
    finally:
        verifier.close()


def create_app(config: RegistryConfig | None = None) -> web.Application:
    collected = RegistryMetrics()
    app = web.Application(middlewares=[collected.middleware(), problem_middleware], client_max_size=MAX_BODY_BYTES)
    app[CONFIG] = config = config or RegistryConfig()
    app[METRICS] = collected
    app[WATCHERS] = Counter()
    app.cleanup_ctx.append(_verifier)
    app[LIMITS] = WriteLimits(config.write_rate_per_ip, config.write_rate_per_key, config.rate_limit_storage)
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_post("/v1/agents", register)
    app.router.add_post("/v1/registrations", register_many)
    app.router.add_get("/v1/agents", search)
    app.router.add_get("/v1/agents/{agent_id}", get_agent)
    app.router.add_post("/v1/agents/{agent_id}/heartbeat", heartbeat)
    app.router.add_post("/v1/agents/{agent_id}/revoke", revoke)
    app.router.add_post("/v1/heartbeats", node_heartbeat)
    app.router.add_post("/v1/agents/{agent_id}/rotate", rotate)
    app.router.add_post("/v1/agents/{agent_id}/withdraw", withdraw)
    app.router.add_get("/v1/agents/{agent_id}/reputation", reputation)
    app.router.add_get("/v1/reputation", reputations)
    app.router.add_post("/v1/receipts", submit_receipt)
    app.router.add_get("/v1/log/head", log_head)
    app.router.add_get("/v1/log/inclusion", log_inclusion)
    app.router.add_get("/v1/log/consistency", log_consistency)
    app.router.add_get("/v1/log/entries", log_entries)
    app.router.add_get("/v1/watch", watch)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    add_explorer_routes(app)
    return app
