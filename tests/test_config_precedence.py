"""Configuration precedence, as docs/configuration.md states it: file < GUILDNET_* environment < flags."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from click.testing import CliRunner
from registry_support import cli_process, free_port, key_path_for

import guildnet.cli.common as common_cli
import guildnet.cli.main as node_cli
import guildnet.cli.node as node_commands
import guildnet.cli.registry as registry_cli
from guildnet.node.config import ConfigError, load_config
from guildnet.node.node import Node
from guildnet.protocols.keys import SigningKey
from guildnet.registry.db import normalise_url
from guildnet.registry.server import CONFIG

ECHO_AGENT = Path(__file__).resolve().parent.parent / "examples" / "echo" / "agent.py"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """What ``web.run_app`` was called with (nothing is served) and the Node built, if any."""
    captured: dict[str, Any] = {}
    monkeypatch.setattr("aiohttp.web.run_app", lambda app, **kw: captured.update(app=app, **kw))
    monkeypatch.setattr(registry_cli, "setup_logging", lambda *a: None)
    monkeypatch.setattr(node_commands, "setup_logging", lambda *a: None)
    from_config = Node.from_config.__func__  # type: ignore[attr-defined]

    def spy(cls: type[Node], config: Any) -> Node:
        node: Node = from_config(cls, config)
        captured["node"] = node
        return node

    monkeypatch.setattr(Node, "from_config", classmethod(spy))
    yield captured
    if "loop" in captured:
        captured["loop"].close()


def run(*args: str, env: dict[str, str] | None = None) -> None:
    result = CliRunner().invoke(node_cli.main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "registry.toml"
    path.parent.mkdir()
    path.write_text('[registry]\nport = 1111\ndb = "sqlite:///file.db"\n')
    return path


@pytest.mark.parametrize(("env", "flags", "port", "db"), [
    ({}, [], 1111, "conf/file.db"),                                       # the file alone
    ({"GUILDNET_REGISTRY_PORT": "2222", "GUILDNET_REGISTRY_DB": "sqlite:///env.db"}, [], 2222, "env.db"),
    ({"GUILDNET_REGISTRY_PORT": "2222", "GUILDNET_REGISTRY_DB": "sqlite:///env.db"},
     ["--port", "3333", "--db", "sqlite:///flag.db"], 3333, "flag.db"),      # flags beat both
    ({"GUILDNET_REGISTRY_PORT": "2222"}, [], 2222, "conf/file.db"),           # per setting, not per source
])
def test_registry_serve_file_then_env_then_flags(started: dict[str, Any], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                 flags: list[str], port: int, db: str) -> None:
    monkeypatch.chdir(tmp_path)
    run("registry", "serve", "--config", str(registry_file(tmp_path)), *flags, env=env)
    assert started["port"] == port
    relative = db.startswith("conf/")  # the file's relative SQLite path is relative to the file
    expected = f"sqlite:///{tmp_path / db}" if relative else f"sqlite:///{db}"
    assert started["app"][CONFIG].db_url == normalise_url(expected)


def test_registry_config_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text('[registry]\nprot = 1\n')
    result = CliRunner().invoke(node_cli.main, ["registry", "serve", "--config", str(path)])
    assert result.exit_code == 2 and "unknown [registry] keys ['prot']" in result.output


def node_file(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'[node]\norg_name = "acme"\norg_key = "keys/org.key"\nport = 9100\n'
                    f'registry = "http://file.example:8400"\n\n'
                    f'[[agents]]\nagent = "{ECHO_AGENT}:agent"\nkey = "keys/echo.key"\n')
    return path


@pytest.mark.parametrize(("env", "flags", "registry", "port"), [
    ({}, [], "http://file.example:8400", 9100),
    ({"GUILDNET_REGISTRY": "http://env.example:8400", "GUILDNET_NODE_PORT": "9200"}, [],
     "http://env.example:8400", 9200),
    ({"GUILDNET_REGISTRY": "http://env.example:8400", "GUILDNET_NODE_PORT": "9200"},
     ["--registry", "http://flag.example:8400", "--port", "9300"], "http://flag.example:8400", 9300),
])
def test_node_run_file_then_env_then_flags(started: dict[str, Any], tmp_path: Path, env: dict[str, str],
                                           flags: list[str], registry: str, port: int) -> None:
    run("node", "run", str(node_file(tmp_path)), *flags, env=env)
    node: Node = started["node"]
    assert (node.registry_url, node.port, started["port"]) == (registry, port, port)
    assert node.base_url == f"http://127.0.0.1:{port}"  # the advertised URL follows the port it serves on


def test_the_node_serves_on_uvloop(started: dict[str, Any], tmp_path: Path) -> None:
    """uvloop, not asyncio's selector loop: the node spends about a fifth less CPU per gRPC call there
    (cli.common.new_event_loop)."""
    run("node", "run", str(node_file(tmp_path)))
    assert isinstance(started["loop"], uvloop.Loop)


def test_the_node_freezes_its_heap_once_its_start_up_hooks_have_run(started: dict[str, Any], tmp_path: Path) -> None:
    """Last of the start-up hooks (after the node's own, so whatever they load is frozen too), the node moves its
    heap out of the collector's reach (cli.common.freeze_startup_heap; docs/trust-model.md)."""
    run("node", "run", str(node_file(tmp_path)))
    app = started["app"]
    assert app.on_startup[-1].__qualname__ == "node_run.<locals>.loaded"
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(app.on_startup[-1](app))
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
        loop.close()


def test_freezing_the_heap_keeps_no_garbage_and_still_collects_what_dies_later() -> None:
    """In a process of its own (freezing is for the whole process): a cycle dropped before the freeze is
    collected, not frozen; a cycle made after it is collected as before."""
    script = """if True:
        import gc, weakref
        from guildnet.cli.common import freeze_startup_heap
        class Node: pass
        def cycle():
            a, b = Node(), Node()
            a.b, b.a = b, a
            return weakref.ref(a)
        gc.disable()  # only the calls below collect
        before = cycle()
        frozen = freeze_startup_heap()
        assert before() is None and frozen == gc.get_freeze_count() > 1_000, (before(), frozen)
        after = cycle()
        assert after() is not None and gc.collect() >= 2 and after() is None
        print("ok")
    """
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout == "ok\n", result.stderr


def test_load_config_applies_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = node_file(tmp_path)
    assert load_config(path).registry == "http://file.example:8400"
    for name, value in {"GUILDNET_REGISTRY": "http://env.example:1", "GUILDNET_NODE_DB": "sqlite:///n.db",
                        "GUILDNET_NODE_PUBLIC_URL": "https://acme.example", "GUILDNET_NODE_PII": "hash"}.items():
        monkeypatch.setenv(name, value)
    config = load_config(path)
    assert config.registry == "http://env.example:1" and config.base_url == "https://acme.example"
    assert config.db == f"sqlite+aiosqlite:///{Path.cwd() / 'n.db'}" and config.pii == "hash"
    assert load_config(path, registry="http://flag.example:2").registry == "http://flag.example:2"
    monkeypatch.setenv("GUILDNET_NODE_PORT", "http")
    with pytest.raises(ConfigError, match=r"'port' must be an integer \(got 'http'\)"):
        load_config(path)


async def test_a_real_registry_process_listens_where_env_says_and_uses_the_flags_db(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file_port, env_port = free_port(), free_port()
    (tmp_path / "registry.toml").write_text(f'[registry]\nport = {file_port}\ndb = "sqlite:///file.db"\n')
    monkeypatch.setenv("GUILDNET_REGISTRY_PORT", str(env_port))
    flag_db = f"sqlite:///{tmp_path}/flag.db"
    async with cli_process("registry", "serve", "--config", str(tmp_path / "registry.toml"), "--db", flag_db,
                           "--key", key_path_for(flag_db), url=f"http://127.0.0.1:{env_port}"):
        assert (tmp_path / "flag.db").exists() and not (tmp_path / "file.db").exists()


SECRET = "s3cr3t-pw"


def test_log_lines_are_json_and_never_carry_a_password_or_a_private_key() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("guildnet.test.redaction")
    logger.addHandler(common_cli.log_handler("json", stream))
    logger.propagate = False
    pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA\n-----END PRIVATE KEY-----"
    try:
        logger.warning("connecting to %s", f"postgresql://guildnet:{SECRET}@db.example/registry", extra={"try": 2})
        try:
            raise OSError(f"cannot open postgresql+asyncpg://u:{SECRET}@h/db with key {pem}")
        except OSError:
            logger.exception("start-up failed")
    finally:
        logger.handlers.clear()
    text = stream.getvalue()
    assert SECRET not in text and "MC4CAQAwBQYDK2VwBCIEIA" not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["message"] == "connecting to postgresql://guildnet:***@db.example/registry" and first["try"] == 2
    assert first["level"] == "WARNING" and first["logger"] == "guildnet.test.redaction" and "time" in first
    assert "postgresql+asyncpg://u:***@h/db" in second["exc_info"] and "[private key redacted]" in second["exc_info"]


def test_a_registry_that_cannot_start_says_why_in_one_json_line_without_the_password(
        tmp_path: Path) -> None:
    env = {**os.environ, "GUILDNET_LOG_FORMAT": "json", "GUILDNET_LOG_LEVEL": "debug"}
    result = subprocess.run([sys.executable, "-m", "guildnet.cli", "registry", "serve", "--port",
                             str(free_port()), "--db", f"postgresql://guildnet:{SECRET}@127.0.0.1:1/registry",
                             "--key", str(tmp_path / "registry.key")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1 and SECRET not in result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line is JSON: no traceback
    assert lines[-1]["level"] == "ERROR" and lines[-1]["message"].startswith("stopped: ConnectionRefusedError")


def test_the_node_requires_the_witnesses_its_config_names(tmp_path: Path) -> None:
    path = node_file(tmp_path)
    w1, w2 = SigningKey.generate().did, SigningKey.generate().did
    path.write_text(path.read_text().replace("[[agents]]", f'[[node.witnesses]]\nname = "w.test/1"\nkey = "{w1}"\n\n'
                                                           f'[[node.witnesses]]\nname = "w.test/2"\nkey = "{w2}"\n\n'
                                                           "[[agents]]"))
    policy = load_config(path).witness_policy()
    assert policy is not None and policy.quorum == 2 and [w.key for w in policy.witnesses] == [w1, w2]
    path.write_text(path.read_text().replace("[[agents]]", "[node.extra]\n[[agents]]", 1))
    with pytest.raises(ConfigError, match="extra"):
        load_config(path)
