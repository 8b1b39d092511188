"""The `guildnet` command as a user runs it: real processes, real exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from registry_support import new_org, registry_process

from guildnet.registry.client import RegistryClient


def guildnet(*args: str, input_text: str | None = None, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guildnet.cli", *args], capture_output=True, text=True,
                          input=input_text, timeout=60, env={**os.environ, **(env or {})})


def test_keys_new_and_show(tmp_path: Path) -> None:
    path = tmp_path / "org.key"
    created = guildnet("keys", "new", str(path))
    assert created.returncode == 0, created.stderr
    did = created.stdout.strip()
    assert did.startswith("did:key:z6Mk")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = guildnet("keys", "show", str(path))
    assert shown.stdout.strip() == did
    assert "PRIVATE" not in shown.stdout + shown.stderr
    again = guildnet("keys", "new", str(path))
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    assert guildnet("keys", "show", str(tmp_path / "missing.key")).returncode != 0


def test_encrypted_key_needs_its_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    env = {"KEYPASS": "s3cret passphrase"}
    assert guildnet("keys", "new", str(path), "--passphrase-env", "KEYPASS", env=env).returncode == 0
    locked = guildnet("keys", "show", str(path))
    assert locked.returncode == 1 and "passphrase" in locked.stderr
    assert guildnet("keys", "show", str(path), "--passphrase-env", "KEYPASS", env=env).stdout.startswith("did:key:")


@pytest.mark.parametrize("command", [[], ["keys"], ["keys", "new"], ["registry"], ["registry", "serve"],
                                     ["registry", "search"], ["registry", "show"], ["node"], ["node", "run"],
                                     ["node", "retire"], ["witness"], ["witness", "serve"], ["witness", "id"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = guildnet(*command, "--help")
    assert result.returncode == 0 and "Usage:" in result.stdout


async def test_registry_serve_search_show(tmp_path: Path) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("summariser", skills=[{"id": "summarise", "name": "Summarise", "tags": ["text"]}],
                            description="Summarises long reports")
    async with registry_process(f"sqlite:///{tmp_path}/r.db") as url:
        async with RegistryClient(url) as client:
            await client.register(facts, key)
        env = {"GUILDNET_REGISTRY": url}
        found = await asyncio.to_thread(guildnet, "registry", "search", "--skill", "summarise", "--json", env=env)
        assert found.returncode == 0, found.stderr
        assert [a["id"] for a in json.loads(found.stdout)["agents"]] == [facts.id]
        table = await asyncio.to_thread(guildnet, "registry", "search", "-q", "reports", env=env)
        assert "summariser" in table.stdout and facts.id in table.stdout
        shown = await asyncio.to_thread(guildnet, "registry", "show", facts.id, env=env)
        assert "signature and endorsement verified" in shown.stdout
        other_key, other = acme.agent("second", skills=[{"id": "summarise", "name": "Summarise"}])
        async with RegistryClient(url) as client:
            await client.register(other, other_key)
        first = await asyncio.to_thread(guildnet, "registry", "search", "--skill", "summarise", "--limit", "1",
                                        env=env)
        assert facts.id in first.stdout and other.id not in first.stdout
        cursor = first.stdout.rsplit("--cursor ", 1)[1].strip()
        second = await asyncio.to_thread(guildnet, "registry", "search", "--skill", "summarise", "--limit", "1",
                                         "--cursor", cursor, env=env)
        assert other.id in second.stdout and facts.id not in second.stdout and "--cursor" not in second.stdout
        missing = await asyncio.to_thread(guildnet, "registry", "show", "did:key:z6MkNope", env=env)
        assert missing.returncode == 1 and "404" in missing.stderr and "Traceback" not in missing.stderr
    unreachable = guildnet("registry", "search", "--registry", "http://127.0.0.1:9")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr


SOME_DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


@pytest.mark.parametrize(("args", "code"), [
    (["keys", "new", "/nonexistent/dir/x.key"], 1),
    (["registry", "search", "--registry", "not-a-url"], 2),
    (["registry", "search", "--registry", "ftp://x"], 2),
    (["registry", "search", "--registry", "http://127.0.0.1:99999"], 2),
    (["registry", "search", "--registry", "http://[::1"], 2),
    (["registry", "serve", "--port", "70000"], 2),
    (["registry", "serve", "--db", "mysql://x"], 2),
    (["registry", "serve", "--rate-limit-storage", "bogus://x"], 2),
    (["registry", "serve", "--witness", "w,did:key:z6MkNope,http://127.0.0.1:1"], 2),
    (["registry", "serve", "--witness", "w,not-a-did,http://127.0.0.1:1"], 2),
    (["registry", "serve", "--witness", f"w,{SOME_DID},ftp://x"], 2),
    (["witness", "serve", "--name", "has space", "--follow", SOME_DID], 2),
    (["witness", "serve", "--name", "w"], 2),
    (["witness", "serve", "--name", "w", "--follow", "not-a-did"], 2),
    (["witness", "id", "--name", "w", "--key", "/nonexistent/witness.key"], 1),
    (["flywheel", "report", "--db", "not-a-url"], 2),
    (["flywheel", "report", "--db", "sqlite:////nonexistent/x.db"], 1),
    (["flywheel", "promote", "lora-x", "--skill", "ticket.classify"], 2),
    (["flywheel", "models", "--skill", "../etc"], 2),
])
def test_mistakes_get_one_line_and_the_documented_exit_code(args: list[str], code: int) -> None:
    """Each of these printed a Python traceback before (found by review)."""
    from click.testing import CliRunner

    from guildnet.cli.main import main

    result = CliRunner().invoke(main, args)
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
