"""Serve the model a skill's :class:`~.models.ModelStore` has in service, and follow promotions and rollbacks
without dropping a request.

A swap starts a second embedded llama.cpp server with the new adapter (~1 s), makes it the agent's first tier
(with the escalation threshold its model card chose on held-out data), and only then lets the old server finish
the requests it had already taken before stopping it. Each server answers under its own model name
(``smollm2+<candidate>``), so every model call in the process data says which model answered. The agent's
AgentFacts ``model`` block follows (``SmolLM2+<candidate>``) and is published at the node's next registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from ..slm.agent import ConfidencePolicy, SLMAgent, Tier
from ..slm.backends import Capabilities, ChatRequest, ChatResult, Price
from ..slm.embedded import EmbeddedServer
from .evaluation import served_alias
from .models import ModelStore

log = logging.getLogger(__name__)


class _Counted:
    """A backend that knows how many calls it has under way, so its server is stopped only when idle."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.model: str = backend.model
        self.price: Price = backend.price
        self.capabilities: Capabilities = backend.capabilities
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def model_facts(self) -> Any:
        return self.backend.model_facts()

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.active += 1
        self._idle.clear()
        try:
            result: ChatResult = await self.backend.chat(request)
            return result
        finally:
            self.active -= 1
            if not self.active:
                self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()

    async def aclose(self) -> None:
        await self.backend.aclose()


@dataclass(slots=True)
class _Running:
    candidate: str | None
    server: EmbeddedServer
    backend: _Counted


class ServedModel:
    """The first tier of ``agent`` for ``store.skill``: the promoted adapter, or the base model."""

    def __init__(self, store: ModelStore, agent: SLMAgent, *, base_policy: ConfidencePolicy | None = None,
                 n_parallel: int = 2, threads: int = 1, drain_seconds: float = 120.0) -> None:
        """``threads``: llama.cpp threads; one by default, as for evaluation (on a busy machine two wait on each
        other)."""
        self.store = store
        self.agent = agent
        self.base_policy = base_policy or ConfidencePolicy()
        self.n_parallel = n_parallel
        self.threads = threads
        self.drain_seconds = drain_seconds
        self._running: _Running | None = None
        self._lock = asyncio.Lock()

    @property
    def candidate(self) -> str | None:
        """The candidate being served (None: the base model)."""
        return self._running.candidate if self._running else None

    def _policy(self, candidate: str | None) -> ConfidencePolicy:
        if candidate is None:
            return self.base_policy
        threshold = self.store.card(candidate)["scores"]["candidate"]["threshold"]
        return ConfidencePolicy(min_mean_logprob=threshold)

    async def reload(self) -> bool:
        """Serve what the store has in service, if that is not what is served; True if it swapped."""
        async with self._lock:
            candidate = self.store.served().current
            if self._running is not None and self._running.candidate == candidate:
                return False
            policy = self._policy(candidate)
            server = EmbeddedServer(lora=self.store.adapter(candidate) if candidate else None,
                                    alias=served_alias(candidate), n_parallel=self.n_parallel,
                                    threads=self.threads)
            await asyncio.to_thread(server.start)
            backend = _Counted(server.backend(timeout=120.0))
            old, self._running = self._running, _Running(candidate, server, backend)
            self.agent.replace_primary(Tier(backend, policy))
            log.info("%s now served by %s", self.store.skill, backend.model)
            if old is not None:
                await self._retire(old)
            return True

    async def _retire(self, old: _Running) -> None:
        try:
            await asyncio.wait_for(old.backend.idle(), self.drain_seconds)
        except TimeoutError:
            log.warning("%s: %d calls still under way after %.0f s; stopping it anyway", old.backend.model,
                        old.backend.active, self.drain_seconds)
        await old.backend.aclose()
        await asyncio.to_thread(old.server.stop)

    async def watch(self, interval: float = 2.0) -> None:
        """Reload whenever a promotion or rollback changes the store (run as a task; cancel to stop)."""
        while True:
            try:
                await self.reload()
            except Exception:  # a bad candidate must not take down the model already in service
                log.exception("could not serve the model now in service for %s", self.store.skill)
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        async with self._lock:
            if self._running is not None:
                with contextlib.suppress(Exception):
                    await self._retire(self._running)
                self._running = None
