"""``guildnet doctor``: every check passes on a healthy node, and each broken piece is named with its fix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from registry_support import free_port, live_registry

from guildnet.node.config import load_config
from guildnet.node.doctor import Check, diagnose
from guildnet.node.node import Node
from guildnet.protocols import keyfile
from guildnet.protocols.keys import SigningKey

ECHO_AGENT = Path(__file__).resolve().parent.parent / "examples" / "echo" / "agent.py"


def write_config(tmp_path: Path, registry: str | None, port: int) -> Path:
    path = tmp_path / "node.toml"
    registry_line = f'registry = "{registry}"\n' if registry else ""
    path.write_text(f'[node]\norg_name = "acme"\norg_key = "keys/org.key"\nport = {port}\ndb = "sqlite:///node.db"\n'
                    f'{registry_line}\n[[agents]]\nagent = "{ECHO_AGENT}:agent"\nkey = "keys/echo.key"\n')
    return path


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUILDNET_")}
    return subprocess.run([sys.executable, "-m", "guildnet.cli", "doctor", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@contextlib.asynccontextmanager
async def node_running(config_path: Path) -> AsyncIterator[Node]:
    node = Node.from_config(load_config(config_path))
    runner = web.AppRunner(node.build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, node.host, node.port).start()
    try:
        yield node
    finally:
        await runner.cleanup()


async def test_a_healthy_running_node_passes_every_check(tmp_path: Path) -> None:
    async with live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db") as registry:
        path = write_config(tmp_path, registry.url, free_port())
        async with node_running(path):
            failing: list[Check] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):  # until the publisher has registered the agent and knows it
                    while True:
                        checks = by_name(await diagnose(path))
                        failing = [c for c in checks.values() if c.status != "ok"]
                        if not failing:
                            break
                        await asyncio.sleep(0.1)
            assert failing == []
            assert set(checks) == {"config", "org key", "pii", "key echo.key", f"agent {ECHO_AGENT}:agent",
                                   "registry", "node", "endpoints echo", "registered echo"}
            assert "person names detected" in checks["pii"].detail  # the test install has the pii extra
            result = await asyncio.to_thread(doctor, str(path), "--json")
            assert result.returncode == 0, result.stdout + result.stderr
            report = json.loads(result.stdout)
            assert report["ok"] is True and len(report["checks"]) == len(checks)
        # the node stopped: its endpoint checks are skipped, not failed
        stopped = by_name(await diagnose(path))
        assert stopped["node"].status == "skip" and "endpoints echo" not in stopped
        assert not [c for c in stopped.values() if c.status == "fail"]


async def test_each_broken_piece_is_named_with_its_fix(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:9", free_port())
    (tmp_path / "keys").mkdir()
    keyfile.save(SigningKey.generate(), tmp_path / "keys" / "org.key")
    (tmp_path / "keys" / "org.key").chmod(0o644)
    checks = by_name(await diagnose(path))
    assert checks["org key"].status == "fail" and checks["org key"].fix == f"chmod 600 {tmp_path}/keys/org.key"
    assert checks["key echo.key"].status == "warn" and "guildnet node run" in (checks["key echo.key"].fix or "")
    assert checks["registry"].status == "fail" and "cannot reach http://127.0.0.1:9" in checks["registry"].detail
    assert checks["node"].status == "skip"

    keyfile.save(SigningKey.generate(), tmp_path / "keys" / "echo.key", "a passphrase")
    encrypted = by_name(await diagnose(path))["key echo.key"]
    assert encrypted.status == "fail" and "encrypted" in encrypted.detail and "without a passphrase" in (
        encrypted.fix or "")

    result = await asyncio.to_thread(doctor, str(path))
    assert result.returncode == 1
    assert f"fix: chmod 600 {tmp_path}/keys/org.key" in result.stdout and "3 check(s) failed" in result.stdout


def test_a_config_that_does_not_parse_stops_the_checks(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[node]\norg_name = 'acme'\n")
    result = doctor(str(path), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and [c["name"] for c in report["checks"]] == ["config"]
    assert "at least one [[agents]] entry is required" in report["checks"][0]["detail"]


@pytest.mark.parametrize(("setting", "name", "detail"), [
    ('pii = "hash"\npii_key_env = "GUILDNET_TEST_UNSET_PII_KEY"', "pii", "needs a key of >= 16 characters"),
    ('pii_names = "sometimes"', "config", "'pii_names': Input should be 'auto', 'on' or 'off'"),
])
async def test_process_data_settings_that_cannot_work_are_named(tmp_path: Path, setting: str, name: str,
                                                                detail: str) -> None:
    path = write_config(tmp_path, None, free_port())
    path.write_text(path.read_text().replace("[node]\n", f"[node]\n{setting}\n", 1))
    check = by_name(await diagnose(path))[name]
    assert check.status == "fail" and detail in check.detail and check.fix
