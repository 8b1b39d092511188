"""What a registry app holds: its configuration, and typed keys for the objects its handlers share.

Its own module so that the route modules (the API in ``server``, the ``explorer`` pages) can all read them
without importing each other.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from guildnet.protocols.signed_write import CLOCK_WINDOW_SECONDS

from .cosigning import CosignatureCollector, WitnessEndpoint
from .domain_lookup import DomainLookupSettings
from .domains import DomainChecker
from .log import TransparencyLog
from .metrics import RegistryMetrics
from .ratelimit import WriteLimits
from .store import RegistryStore
from .trust import ReputationService
from .verifier import RegistrationVerifier
from .watch import ChangeHub


@dataclass
class RegistryConfig:
    db_url: str = "sqlite+aiosqlite:///guildnet-registry.db"
    sweep_interval: float = 1.0
    clock: Callable[[], float] = time.time
    clock_window: int = CLOCK_WINDOW_SECONDS
    watch_queue_size: int = 1000
    watch_poll_interval: float = 1.0
    key_path: str | None = None
    """The registry's Ed25519 key (signs tree heads); created 0600 if missing. Default: next to the SQLite file,
    else ``./registry.key``. Replicas of one PostgreSQL database must share it."""
    pretrusted_orgs: tuple[str, ...] = ()
    """Organisation DIDs that anchor EigenTrust; without any, reputation is not computed (the API answers 503)."""
    reputation_interval: float = 300.0
    write_rate_per_ip: str | None = "6000/minute"
    """Signed writes one client address may send (``limits`` notation); ``None``: unlimited. The address is the
    TCP peer: behind a load balancer, limit per address there."""
    write_rate_per_key: str | None = "600/minute"
    """Signed writes one verified key may send; ``None``: unlimited."""
    max_watchers: int = 10_000
    """Open ``/v1/watch`` sockets the replica serves at most (each holds a bounded queue); more get 503."""
    max_watchers_per_ip: int = 1_000
    """Open watch sockets one client address may hold; more get 429."""
    body_timeout: float = 10.0
    """Seconds a client may take to send a write's body; a slower (slowloris) client gets 408."""
    rate_limit_storage: str = "memory://"
    """Where counts live: ``memory://`` (per replica) or a ``limits`` storage URI such as ``redis://host:6379``."""
    witnesses: tuple[WitnessEndpoint, ...] = ()
    """Witnesses that cosign the log's checkpoints (registry/cosigning.py); none: heads are served uncosigned."""
    witness_quorum: int | None = None
    """How many of them must cosign a checkpoint before ``/v1/log/head`` serves it; ``None``: all of them."""
    cosign_interval: float = 1.0
    """Seconds between looks at the log's head for a checkpoint to submit to the witnesses."""
    domain_lookup: DomainLookupSettings = field(default_factory=DomainLookupSettings)
    """Where organisations' domain proofs are looked up (DNS server, CAs); default: the system's."""
    domain_recheck_interval: float = 6 * 3600.0
    """Seconds between checks of each claimed domain's proof."""
    domain_withdraw_after: int = 3
    """Failed checks in a row after which a verified domain mark is withdrawn."""
    verify_workers: int = 0
    """Processes that check registrations (signatures, facts) beside the event loop; 0: inline."""


STORE = web.AppKey("store", RegistryStore)
HUB = web.AppKey("hub", ChangeHub)
CONFIG = web.AppKey("config", RegistryConfig)
LOG = web.AppKey("log", TransparencyLog)
REPUTATION = web.AppKey("reputation", ReputationService)
METRICS = web.AppKey("metrics", RegistryMetrics)
LIMITS = web.AppKey("limits", WriteLimits)
COSIGNING = web.AppKey("cosigning", CosignatureCollector)
"""Present when witnesses are configured."""
DOMAINS = web.AppKey("domains", DomainChecker)
VERIFIER = web.AppKey("verifier", RegistrationVerifier)
WATCHERS = web.AppKey("watchers", Counter[str])
"""Open watch sockets per client address."""
