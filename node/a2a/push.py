"""Push notifications at run time: callers' webhook configs, and delivery of task events to them.

A webhook is another organisation's server, chosen by the caller, so the node treats it as hostile:

* **where**: an address that :func:`~guildnet.protocols.a2a.push.refusal` names (private, loopback, link-local,
  ...) is refused unless it lies in ``allow_networks`` (tests allow 127.0.0.1): a literal address when the config
  is created and again before each attempt, a host name at each attempt through a resolver that only ever hands
  the connection checked addresses (so a name cannot resolve one way for the check and another for the connect);
* **how long**: each attempt has ``timeout`` seconds; no redirect is followed; the reply's body is not read;
* **how often**: ``max_attempts`` per event with exponential backoff, then the event is dropped and logged;
* **how much**: at most :data:`~guildnet.protocols.a2a.push.MAX_CONFIGS_PER_TASK` configs per task, at most
  ``max_pending`` deliveries waiting (more are dropped, logged and counted), ``concurrency`` posts at a time.

Each delivery carries the receiver's own secrets as the spec says (``Authorization`` from the config's
``authentication``, ``X-A2A-Notification-Token``), the event id (``A2A-Notification-Id``), and a signature by the
agent's key in force (``A2A-Notification-Signature``) that a receiver checks against the agent's signed card.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
import uuid
from collections.abc import Iterable, Mapping

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from guildnet.protocols import a2a
from guildnet.protocols.a2a import JSON, A2AError, rest
from guildnet.protocols.a2a import push as wire

from ..identity import Signer
from .push_store import Delivery, PushStore, StoredConfig

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TargetRefused(Exception):
    """The webhook's address is one the node does not post to."""


def _allowed(address: str, allow: Iterable[Network]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return any(ip in net for net in allow)


def check_address(address: str, allow: Iterable[Network]) -> None:
    why = wire.refusal(address)
    if why is not None and not _allowed(address, allow):
        raise TargetRefused(f"{address} {why}; webhooks there are refused (see [node] push_allow_networks)")


class GuardedResolver(AbstractResolver):
    """Resolves through aiohttp's default resolver and keeps only the addresses the node may post to."""

    def __init__(self, allow: tuple[Network, ...]) -> None:
        self._inner = DefaultResolver()
        self._allow = allow

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept = [r for r in results if wire.refusal(r["host"]) is None or _allowed(r["host"], self._allow)]
        if not kept:
            raise OSError(f"{host} resolves only to addresses webhooks are refused at")
        return kept

    async def close(self) -> None:
        await self._inner.close()


class PushService:
    """Configs per task and the delivery loop, over one :class:`PushStore`, for every agent of a node."""

    def __init__(self, store: PushStore, signers: Mapping[str, Signer], *, allow_networks: Iterable[Network] = (),
                 timeout: float = 10.0, max_attempts: int = 6, max_pending: int = 10_000, concurrency: int = 8,
                 backoff_base: float = 1.0, backoff_cap: float = 300.0) -> None:
        self.store = store
        self.signers = signers
        self.allow = tuple(allow_networks)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_pending = max_pending
        self.concurrency = concurrency
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.dropped = 0
        self.delivered = 0
        self._configured: set[tuple[str, str]] = set()
        self._pending = 0
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------------
    async def open(self) -> None:
        await self.store.open()
        self._configured = await self.store.configured_tasks()
        self._pending = await self.store.pending()
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allow), limit=self.concurrency)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._worker = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.store.close()

    # ---- configs -------------------------------------------------------------------------------------------
    async def create(self, agent: str, owner: str | None, config: wire.PushConfig) -> JSON:
        host, _ = wire.check_url(config.url)
        literal = wire.literal_address(host)
        if literal is not None:
            try:
                check_address(literal, self.allow)
            except TargetRefused as exc:
                raise a2a.invalid_params(f"'url': {exc}") from exc
        existing = await self.store.configs(agent, config.task_id)
        if len(existing) >= wire.MAX_CONFIGS_PER_TASK and all(c.config.id != config.id for c in existing):
            raise a2a.invalid_params(f"a task has at most {wire.MAX_CONFIGS_PER_TASK} push notification configs")
        await self.store.put_config(StoredConfig(agent, owner, config))
        self._configured.add((agent, config.task_id))
        return config.to_json()

    async def get(self, agent: str, task_id: str, config_id: str) -> JSON:
        for stored in await self.store.configs(agent, task_id):
            if stored.config.id == config_id:
                return stored.config.to_json()
        raise A2AError(a2a.TASK_NOT_FOUND, f"Push notification config not found: {config_id}")

    async def list(self, agent: str, task_id: str) -> JSON:
        return {"configs": [s.config.to_json() for s in await self.store.configs(agent, task_id)],
                "nextPageToken": ""}

    async def delete(self, agent: str, task_id: str, config_id: str) -> None:
        await self.store.delete_config(agent, task_id, config_id)

    async def purge(self, created_before: float) -> int:
        """Forget configs older than the node's task retention (their tasks are gone or going)."""
        purged = await self.store.purge(created_before)
        if purged:
            self._configured = await self.store.configured_tasks()
            self._pending = await self.store.pending()
        return purged

    # ---- events --------------------------------------------------------------------------------------------
    async def task_event(self, agent: str, task_id: str, event: JSON) -> None:
        """Queue ``event`` for every webhook of the task, durably, before the caller goes on."""
        if (agent, task_id) not in self._configured or not event:
            return
        configs = await self.store.configs(agent, task_id)
        if not configs:
            self._configured.discard((agent, task_id))
            return
        if self._pending + len(configs) > self.max_pending:
            self.dropped += len(configs)
            log.warning("push: %d pending deliveries, the limit; an event of task %s is dropped", self._pending,
                        task_id)
            return
        body = rest.body(event)
        now = time.time()
        await self.store.enqueue([Delivery(uuid.uuid4().hex, agent, task_id, c.config.id, body, 0, now)
                                  for c in configs])
        self._pending += len(configs)
        self._wake.set()

    # ---- delivery ------------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await self._deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push: the delivery loop failed; retrying in 1 s")
                await asyncio.sleep(1.0)
                continue
            self._wake.clear()
            nxt = await self._next_wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(nxt):
                    await self._wake.wait()

    async def _next_wait(self) -> float:
        due = await self.store.due(time.time() + self.backoff_cap, 1)
        return max(0.05, due[0].next_at - time.time()) if due else self.backoff_cap

    async def _deliver_due(self) -> None:
        while batch := await self.store.due(time.time(), self.concurrency * 4):
            await asyncio.gather(*(self._attempt(d) for d in batch))

    async def _attempt(self, delivery: Delivery) -> None:
        configs = {c.config.id: c for c in await self.store.configs(delivery.agent, delivery.task_id)}
        stored = configs.get(delivery.config_id)
        if stored is None:  # deleted since: nothing more goes to it
            await self._forget(delivery)
            return
        try:
            status = await self._post(delivery, stored.config)
        except (TargetRefused, aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._failed(delivery, str(exc) or type(exc).__name__, permanent=isinstance(exc, TargetRefused))
            return
        if 200 <= status < 300:
            self.delivered += 1
            await self._forget(delivery)
        else:
            await self._failed(delivery, f"HTTP {status}", permanent=400 <= status < 500 and status not in (408, 429))

    async def _post(self, delivery: Delivery, config: wire.PushConfig) -> int:
        host, _ = wire.check_url(config.url)
        literal = wire.literal_address(host)
        if literal is not None:
            check_address(literal, self.allow)
        signer = self.signers.get(delivery.agent)
        headers = {"Content-Type": "application/json", wire.EVENT_ID_HEADER: delivery.id,
                   a2a.VERSION_HEADER: a2a.PROTOCOL_VERSION, **config.headers()}
        if signer is not None:
            headers[wire.SIGNATURE_HEADER] = wire.sign_notification(
                signer.key, url=config.url, body=delivery.body, task_id=delivery.task_id, event_id=delivery.id)
        assert self._session is not None
        async with self._session.post(config.url, data=delivery.body, headers=headers,
                                      allow_redirects=False) as resp:
            return resp.status

    async def _forget(self, delivery: Delivery) -> None:
        await self.store.done(delivery.id)
        self._pending = max(0, self._pending - 1)

    async def _failed(self, delivery: Delivery, why: str, *, permanent: bool) -> None:
        attempts = delivery.attempts + 1
        if permanent or attempts >= self.max_attempts:
            self.dropped += 1
            log.warning("push: gave up on event %s of task %s after %d attempt(s): %s", delivery.id,
                        delivery.task_id, attempts, why)
            await self._forget(delivery)
            return
        delay = wire.retry_delay(attempts, base=self.backoff_base, cap=self.backoff_cap)
        log.info("push: event %s of task %s: %s; retry %d in %.1f s", delivery.id, delivery.task_id, why,
                 attempts, delay)
        await self.store.retry(delivery.id, attempts, time.time() + delay)
