"""Node configuration: a TOML file (``guildnet node run node.toml``) or the same fields from Python.

    [node]
    org_name = "acme"
    org_key = "keys/org.key"        # created (mode 0600) if missing
    host = "127.0.0.1"
    port = 9100
    public_url = "http://127.0.0.1:9100"   # what peers are told; default http://host:port
    db = "sqlite:///acme-node.db"           # task store; postgresql://... for a shared store
    registry = "http://127.0.0.1:8400"      # optional: without it the node serves A2A and MCP only
    pii = "redact"                          # process data: "redact" PII, or "hash" it with a key ...
    pii_key_env = "GUILDNET_PII_KEY"        # ... read from this environment variable (>= 16 bytes)
    pii_names = "auto"                      # person names: "auto" if spaCy is installed, "on" (required), "off"
    retention_days = 30                     # process data older than this is deleted

    [[agents]]
    agent = "agent.py:agent"        # a Python file (relative to this TOML) or module, and the attribute
    key = "keys/echo.key"           # created if missing
    ttl_seconds = 60

Paths are relative to the TOML file's directory. Environment variables override the file, and the
command line overrides both (docs/configuration.md): ``GUILDNET_NODE_HOST``, ``GUILDNET_NODE_PORT``,
``GUILDNET_NODE_PUBLIC_URL``, ``GUILDNET_NODE_DB`` and ``GUILDNET_REGISTRY`` (the registry URL).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from guildnet.protocols.keys import SigningKey

from .agent import Agent
from .pii import NameDetectionUnavailable, NamesSetting, Scrubber


class ConfigError(ValueError):
    """The node configuration cannot be used; the message says which field and why."""


@dataclass
class AgentConfig:
    agent: str
    key: Path
    ttl_seconds: int = 60


@dataclass
class NodeConfig:
    org_name: str
    org_key: Path
    host: str = "127.0.0.1"
    port: int = 9100
    public_url: str | None = None
    db: str = "sqlite:///guildnet-node.db"
    registry: str | None = None
    pii: str = "redact"
    pii_key_env: str = "GUILDNET_PII_KEY"
    pii_names: str = "auto"
    retention_days: int = 30
    agents: list[AgentConfig] = field(default_factory=list)
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


NODE_KEYS = frozenset({"org_name", "org_key", "host", "port", "public_url", "db", "registry", "pii", "pii_key_env",
                       "pii_names", "retention_days"})
AGENT_KEYS = frozenset({"agent", "key", "ttl_seconds"})


def _no_unknown_keys(table: dict[str, Any], known: frozenset[str], where: str) -> None:
    """A misspelt key (``registy = ...``) would otherwise be ignored and the node run without it."""
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")


def _field(table: dict[str, Any], name: str, kind: type, where: str, default: Any = ...) -> Any:
    if name not in table:
        if default is ...:
            raise ConfigError(f"{where}: '{name}' is required")
        return default
    value = table[name]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{where}: '{name}' must be a {kind.__name__}")
    return value


ENV_OVERRIDES = {"GUILDNET_NODE_HOST": "host", "GUILDNET_NODE_PORT": "port", "GUILDNET_NODE_PUBLIC_URL": "public_url",
                 "GUILDNET_NODE_DB": "db", "GUILDNET_REGISTRY": "registry"}
"""Environment variables that override a ``[node]`` field of the file."""


def with_overrides(config: NodeConfig, *, host: str | None = None, port: int | None = None,
                   public_url: str | None = None, db: str | None = None, registry: str | None = None) -> NodeConfig:
    """``config`` with every given (non-None) field replaced; a relative SQLite ``db`` here is relative to the
    working directory, as for any path typed on a command line."""
    changes: dict[str, Any] = {name: value for name, value in (("host", host), ("port", port),
                                                                ("public_url", public_url), ("registry", registry))
                               if value is not None}
    if db is not None:
        changes["db"] = resolve_db_url(db, Path.cwd())
    return replace(config, **changes)


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``[node]`` fields the environment sets (see :data:`ENV_OVERRIDES`), for :func:`with_overrides`."""
    values: dict[str, Any] = {}
    for variable, name in ENV_OVERRIDES.items():
        raw = environ.get(variable)
        if raw is None or raw == "":
            continue
        if name == "port":
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ConfigError(f"${variable} must be a port number, not {raw!r}")
            values[name] = int(raw)
        else:
            values[name] = raw
    return values


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Read the TOML file, then apply the environment's overrides (``environ``, default ``os.environ``)."""
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from exc
    base = source.resolve().parent
    node = data.get("node")
    if not isinstance(node, dict):
        raise ConfigError(f"{source}: a [node] table is required")
    agents_raw = data.get("agents", [])
    if not isinstance(agents_raw, list) or not agents_raw:
        raise ConfigError(f"{source}: at least one [[agents]] entry is required")
    agents = []
    for index, entry in enumerate(agents_raw):
        where = f"{source} [[agents]] #{index + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a table")
        _no_unknown_keys(entry, AGENT_KEYS, where)
        agents.append(AgentConfig(agent=_field(entry, "agent", str, where),
                                  key=base / _field(entry, "key", str, where),
                                  ttl_seconds=_field(entry, "ttl_seconds", int, where, 60)))
    where = f"{source} [node]"
    _no_unknown_keys(node, NODE_KEYS, where)
    config = NodeConfig(
        org_name=_field(node, "org_name", str, where),
        org_key=base / _field(node, "org_key", str, where),
        host=_field(node, "host", str, where, "127.0.0.1"),
        port=_field(node, "port", int, where, 9100),
        public_url=_field(node, "public_url", str, where, None),
        db=resolve_db_url(_field(node, "db", str, where, "sqlite:///guildnet-node.db"), base),
        registry=_field(node, "registry", str, where, None),
        pii=_field(node, "pii", str, where, "redact"),
        pii_key_env=_field(node, "pii_key_env", str, where, "GUILDNET_PII_KEY"),
        pii_names=_field(node, "pii_names", str, where, "auto"),
        retention_days=_field(node, "retention_days", int, where, 30),
        agents=agents,
        base_dir=base,
    )
    return with_overrides(config, **env_overrides(os.environ if environ is None else environ))


def resolve_db_url(url: str, base: Path) -> str:
    """Pick the async drivers, and make a relative SQLite path relative to the config file."""
    for plain, driver in (("sqlite:///", "sqlite+aiosqlite:///"), ("postgresql://", "postgresql+asyncpg://"),
                          ("postgres://", "postgresql+asyncpg://")):
        if url.startswith(plain):
            url = driver + url[len(plain):]
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix) and not url[len(prefix):].startswith("/"):
        return prefix + str(base / url[len(prefix):])
    return url


def scrubber_for(config: NodeConfig) -> Scrubber:
    """The PII scrubber the config asks for; a hashing scrubber needs its key in the environment."""
    if config.pii not in ("redact", "hash"):
        raise ConfigError(f"[node] pii must be 'redact' or 'hash', not {config.pii!r}")
    if config.pii_names not in ("auto", "on", "off"):
        raise ConfigError(f"[node] pii_names must be 'auto', 'on' or 'off', not {config.pii_names!r}")
    names = cast(NamesSetting, config.pii_names)
    try:
        if config.pii == "hash":
            key = os.environ.get(config.pii_key_env, "")
            if len(key) < 16:
                raise ConfigError(f"[node] pii = 'hash' needs a key of >= 16 characters in ${config.pii_key_env}")
            return Scrubber("hash", key=key.encode(), names=names)
        return Scrubber("redact", names=names)
    except NameDetectionUnavailable as exc:
        raise ConfigError(f"[node] pii_names = 'on': {exc}") from None


def load_or_create_key(path: Path) -> SigningKey:
    """Load a key file, creating it (mode 0600) on first use so a new node needs no manual key step."""
    if path.exists():
        return SigningKey.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SigningKey.generate()
    key.save(path)
    return key


def load_agent(reference: str, base: Path) -> Agent:
    """Resolve ``file.py:attr`` (relative to the config) or ``package.module:attr`` to an Agent.

    An agent file may import modules beside it, as a script may: its folder joins ``sys.path``."""
    target, _, attribute = reference.rpartition(":")
    if not target or not attribute:
        raise ConfigError(f"agent reference {reference!r} must look like 'agent.py:agent' or 'pkg.module:agent'")
    if target.endswith(".py"):
        file = (base / target).resolve()
        if not file.exists():
            raise ConfigError(f"agent file {file} does not exist")
        if str(file.parent) not in sys.path:
            sys.path.append(str(file.parent))
        name = f"guildnet_agent_{abs(hash(str(file)))}"
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ConfigError(f"cannot import module {target!r}: {exc}") from exc
    value = getattr(module, attribute, None)
    if not isinstance(value, Agent):
        raise ConfigError(f"{reference} is not a guildnet Agent (got {type(value).__name__})")
    return value
