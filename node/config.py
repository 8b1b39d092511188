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
    pii_names = "auto"                      # person names: "auto" (the installed models), "on" (all required), "off"
    retention_days = 30                     # process data older than this is deleted
    cluster_vectors = "auto"                # flywheel clusters by "embedding" (meaning), "tfidf" (wording), "auto"
    task_retention_days = 7                 # finished A2A tasks (raw inputs and outputs) too
    org_domain = "acme.example"             # optional: the domain the organisation claims (docs/domains.md)
    require_verified_domain = false         # delegate only to organisations whose domain this node proved

    [[agents]]
    agent = "agent.py:agent"        # a Python file (relative to this TOML) or module, and the attribute
    key = "keys/echo.key"           # created if missing
    ttl_seconds = 60

Paths are relative to the TOML file's directory. Each ``[node]`` field can be overridden by the environment,
``GUILDNET_NODE_<FIELD>`` (``GUILDNET_REGISTRY`` for the registry URL), and the command line overrides both
(docs/configuration.md). Fields are checked by pydantic: a misspelt key or a value of the wrong type is an
error naming the field, never silently ignored.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import ipaddress
import json
import os
import sys
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from guildnet.protocols import schema_check
from guildnet.protocols.agentfacts import DOMAIN_PATTERN, MAX_DOMAIN_LENGTH
from guildnet.protocols.witness import Witness, WitnessPolicy
from guildnet.registry.client import DomainLookupSettings, parse_dns_server

from .agent import Agent
from .pii import NameDetectionUnavailable, NamesSetting, Scrubber


class ConfigError(ValueError):
    """The node configuration cannot be used; the message says which field and why."""


class AgentConfig(BaseModel):
    """One ``[[agents]]`` entry."""

    model_config = ConfigDict(extra="forbid")

    agent: str
    key: Path
    ttl_seconds: int = Field(60, ge=1)


class WitnessConfig(BaseModel):
    """A ``[[node.witnesses]]`` entry: a witness of the registry's log this node requires."""

    model_config = ConfigDict(extra="forbid")

    name: str
    key: str


class _NodeEnvironment(EnvSettingsSource):
    """``GUILDNET_NODE_*`` (and ``GUILDNET_REGISTRY``) for the ``[node]`` fields; the agents and the folder
    relative paths start from come from the file alone."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in ("agents", "base_dir"):
            return None, field_name, False
        return super().get_field_value(field, field_name)


_FILE_VALUES: ContextVar[dict[str, Any] | None] = ContextVar("guildnet_node_config_file", default=None)
"""The config file's values while :func:`load_config` builds a :class:`NodeConfig`: the lowest source."""


class NodeConfig(BaseSettings):
    """A node's configuration: the ``[node]`` table's fields, its ``[[agents]]``, and the folder the file's
    relative paths are relative to.

    Each ``[node]`` field can be overridden by the environment (``GUILDNET_NODE_<FIELD>``, and
    ``GUILDNET_REGISTRY`` for the registry URL) and then by keyword arguments (command-line flags).
    """

    model_config = SettingsConfigDict(env_prefix="GUILDNET_NODE_", extra="forbid", validate_by_name=True)

    org_name: str
    org_key: Path
    host: str = "127.0.0.1"
    port: int = Field(9100, ge=1, le=65535)
    public_url: str | None = None
    db: str = "sqlite:///guildnet-node.db"
    registry: str | None = Field(None, validation_alias="GUILDNET_REGISTRY")
    registry_key: str | None = None
    """The did:key of the registry's log key (``guildnet registry key`` prints it): pinned, every head must be signed
    by it. Without it the node trusts the first key it sees and keeps it (in its database)."""
    witnesses: list[WitnessConfig] = []
    """Witnesses of the registry's log (``guildnet witness id`` prints each one's name and key): a head counts only
    when ``witness_quorum`` of them cosigned it, which defeats a registry showing different trees to different
    nodes (docs/witness.md)."""
    witness_quorum: int | None = None
    """How many of ``witnesses`` must cosign each head (default: all of them)."""
    pii: Literal["redact", "hash"] = "redact"
    pii_key_env: str = "GUILDNET_PII_KEY"
    pii_names: Literal["auto", "on", "off"] = "auto"
    cluster_vectors: Literal["auto", "embedding", "tfidf"] = "auto"
    """What ``guildnet flywheel clusters`` groups process data by: meaning (``embedding``, the bundled static
    model), wording (``tfidf``), or ``auto`` (embeddings when the model loads)."""
    retention_days: int = Field(30, ge=1)
    task_retention_days: float = Field(7.0, gt=0)
    """Finished A2A tasks (callers' raw inputs and outputs) are deleted this long after their last update."""
    anonymous: Literal["off", "loopback", "on"] = "loopback"
    """Who may call without signing: nobody (``off``), this machine (``loopback``), or anyone (``on``). Callers
    from other organisations sign every request with their agent key (docs/trust-model.md)."""
    pinned_schemas: dict[str, Path] = {}
    """Skill id -> a JSON Schema file (relative to the config file): the output schema this node checks results
    of that skill against when it delegates it, whatever the callee declares (docs/trust-model.md)."""
    grpc_port: int | None = Field(None, ge=1, le=65535)
    """Serve the A2A gRPC binding on this port too (needs ``pip install 'guildnet[grpc]'``); the cards list it."""
    push_notifications: bool = True
    """Let callers register webhooks for their tasks (A2A push notifications, docs/a2a-bindings.md)."""
    push_allow_networks: list[str] = []
    """Private, loopback or link-local networks webhooks may point into anyway (CIDR, e.g. ``10.0.0.0/8``); by
    default such targets are refused, since a caller could aim them at the node's own network."""
    extended_card: bool = False
    """Serve GetExtendedAgentCard to the callers the node accepts."""
    delegation_push_after: float = Field(120.0, gt=0)
    """A delegation with a longer deadline (seconds) is a long task: a peer whose signed card offers push
    notifications is asked to push the result to this node's webhook instead of holding a connection open."""
    admin_socket: Path = Path("node.sock")
    """The Unix socket (mode 0600, relative to the config file) where the running node takes local commands."""
    org_domain: str | None = Field(None, pattern=DOMAIN_PATTERN, max_length=MAX_DOMAIN_LENGTH)
    require_verified_domain: bool = False
    dns_server: str | None = None
    domain_ca_file: Path | None = None
    agents: list[AgentConfig] = Field(min_length=1, exclude=True)
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _NodeEnvironment(settings_cls), InitSettingsSource(settings_cls, _FILE_VALUES.get() or {})

    @field_validator("push_allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    @field_validator("dns_server")
    @classmethod
    def _dns_server(cls, value: str | None) -> str | None:
        if value is not None:
            parse_dns_server(value)
        return value

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    def read_pinned_schemas(self) -> dict[str, dict[str, Any]]:
        """The schemas ``pinned_schemas`` names, read and parsed (:class:`ConfigError` naming the file if not)."""
        schemas = {}
        for skill, path in self.pinned_schemas.items():
            source = path if path.is_absolute() else self.base_dir / path
            try:
                schema = json.loads(source.read_text())
            except OSError as exc:
                raise ConfigError(f"[node.pinned_schemas] {skill}: cannot read {source}: {exc.strerror}") from None
            except ValueError as exc:
                raise ConfigError(f"[node.pinned_schemas] {skill}: {source} is not JSON: {exc}") from None
            try:
                schema_check.checker(schema)
            except schema_check.UnsafeSchema as exc:
                raise ConfigError(f"[node.pinned_schemas] {skill}: {source}: {exc}") from None
            schemas[skill] = schema
        return schemas

    def witness_policy(self) -> WitnessPolicy | None:
        """The witnesses every head must be cosigned by, and how many (None: no witnesses required)."""
        if not self.witnesses:
            return None
        return WitnessPolicy(tuple(Witness(w.name, w.key) for w in self.witnesses),
                             self.witness_quorum or len(self.witnesses))
    @property
    def domain_lookup(self) -> DomainLookupSettings:
        """Where this node looks up other organisations' domain proofs."""
        return DomainLookupSettings(dns_server=self.dns_server,
                                    ca_file=str(self.domain_ca_file) if self.domain_ca_file else None)


_KINDS = {"int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
          "float_parsing": "a number", "float_type": "a number", "bool_parsing": "true or false",
          "bool_type": "true or false", "string_type": "a string", "list_type": "a list", "dict_type": "a table"}
"""Pydantic's error types, as a config's reader would say what a value must be."""


def _describe(error: ValidationError, where: str) -> str:
    """One line per problem, naming the field: ``node.toml: 'port' must be an integer (got 'abc')``."""
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(file)"
        if item["type"] == "extra_forbidden":
            known = difflib.get_close_matches(str(item["loc"][-1]), NodeConfig.model_fields, n=1)
            problems.append(f"unknown key {location!r}" + (f" (did you mean {known[0]!r}?)" if known else ""))
        elif item["type"] == "missing":
            problems.append(f"{location!r} is required")
        elif item["type"] in _KINDS:
            problems.append(f"{location!r} must be {_KINDS[item['type']]} (got {item['input']!r})")
        else:
            problems.append(f"{location!r}: {item['msg']} (got {item['input']!r})")
    return f"{where}: " + "; ".join(problems)


def load_config(path: str | Path, **flags: Any) -> NodeConfig:
    """Read the TOML file, then the environment's overrides, then ``flags`` (those not None): each setting from
    the last place that gives it. Relative paths in the file are relative to the file; a relative SQLite ``db``
    from the environment or a flag is relative to the working directory."""
    source = Path(path)
    try:
        data = tomllib.loads(source.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from exc
    base = source.resolve().parent
    unknown = sorted(set(data) - {"node", "agents"})
    if unknown:
        guesses = [f"[{name}] (did you mean {'[[agents]]' if close[0] == 'agents' else '[node]'}?)"
                   if (close := difflib.get_close_matches(name, ["node", "agents"], n=1, cutoff=0.5)) else f"[{name}]"
                   for name in unknown]
        raise ConfigError(f"{source}: unknown table {', '.join(guesses)}; a node config has one [node] table and "
                          "[[agents]] entries (docs/agents.md)")
    node, agents = data.get("node"), data.get("agents", [])
    if not isinstance(node, dict):
        raise ConfigError(f"{source}: a [node] table is required")
    if not isinstance(agents, list) or not agents:
        raise ConfigError(f"{source}: at least one [[agents]] entry is required")
    clash = sorted({"agents", "base_dir"} & set(node))
    if clash:
        raise ConfigError(f"{source} [node]: unknown keys {clash}")
    values: dict[str, Any] = {**node, "agents": agents, "base_dir": base}
    for key in ("org_key", "domain_ca_file", "db"):
        if isinstance(values.get(key), str):
            values[key] = str(base / values[key]) if key != "db" else resolve_db_url(values[key], base)
    for entry in agents:
        if isinstance(entry, dict) and isinstance(entry.get("key"), str):
            entry["key"] = str(base / entry["key"])
    token = _FILE_VALUES.set(values)
    try:
        config = NodeConfig(**{name: value for name, value in flags.items() if value is not None})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, f"{source} (with GUILDNET_NODE_* and flags)")) from None
    finally:
        _FILE_VALUES.reset(token)
    return config.model_copy(update={"db": resolve_db_url(config.db, Path.cwd()),
                                     "admin_socket": base / config.admin_socket})


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
    names: NamesSetting = config.pii_names
    try:
        if config.pii == "hash":
            key = os.environ.get(config.pii_key_env, "")
            if len(key) < 16:
                raise ConfigError(f"[node] pii = 'hash' needs a key of >= 16 characters in ${config.pii_key_env}")
            return Scrubber("hash", key=key.encode(), names=names)
        return Scrubber("redact", names=names)
    except NameDetectionUnavailable as exc:
        raise ConfigError(f"[node] pii_names = 'on': {exc}") from None


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
    if not hasattr(module, attribute):
        agents = [name for name, value in vars(module).items() if isinstance(value, Agent)]
        close = difflib.get_close_matches(attribute, [n for n in vars(module) if not n.startswith("_")], n=1)
        raise ConfigError(f"{target} has no attribute {attribute!r}"
                          + (f" (did you mean {close[0]!r}?)" if close else "")
                          + (f"; its agents: {', '.join(agents)}" if agents else "; it defines no guildnet Agent"))
    value = getattr(module, attribute)
    if not isinstance(value, Agent):
        raise ConfigError(f"{reference} is not a guildnet Agent but a {type(value).__name__}: point it at an Agent "
                          "instance, such as a FunctionAgent (docs/agents.md)")
    return value
