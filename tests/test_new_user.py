"""A new user's path (issue 19): every failure says what happened and what to do, with the documented exit code.

Each test drives the real ``guildnet`` command (a subprocess) against real servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from registry_support import new_org, registry_process

from guildnet.registry.client import RegistryClient

HEAVY = ("sqlalchemy", "aiohttp", "pydantic", "cryptography", "mcp", "nacl", "jsonschema", "alembic")


def guildnet(*args: str, env: dict[str, str] | None = None, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guildnet.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", [[], ["delegate"], ["registry", "search"], ["node", "run"], ["doctor"],
                                     ["keys", "new"], ["witness", "serve"], ["flywheel", "report"],
                                     ])
def test_help_imports_nothing_heavy(command: list[str]) -> None:
    """``--help`` must be instant: no database, HTTP, crypto or schema library is imported to print it."""
    probe = ("import sys\nfrom guildnet.cli.main import main\n"
             f"try:\n    main({[*command, '--help']!r})\nexcept SystemExit:\n    pass\n"
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


async def test_search_live_stale_any_and_org_by_name(tmp_path: Path) -> None:
    acme, initech = new_org("acme"), new_org("initech")
    live_key, live = acme.agent("echo", a2a="http://127.0.0.1:9/agents/echo/a2a")
    stale_key, stale = acme.agent("old", ttl_seconds=5)
    other_key, other = initech.agent("echo")
    async with registry_process(f"sqlite:///{tmp_path}/r.db") as url:
        async with RegistryClient(url) as client:
            for key, facts in ((stale_key, stale), (live_key, live), (other_key, other)):
                await client.register(facts, key)
        registered = time.monotonic()
        page = await asyncio.to_thread(guildnet, "registry", "search", "--org", "x" * 129,
                                       env={"GUILDNET_REGISTRY": url})
        assert page.returncode == 1 and "128" in page.stderr, page.stderr
        await asyncio.sleep(max(0.0, registered + 5.5 - time.monotonic()))  # "old" misses its heartbeat

        def ids(*args: str) -> set[str]:
            done = guildnet("registry", "search", *args, "--json", env={"GUILDNET_REGISTRY": url})
            assert done.returncode == 0, done.stderr
            return {a["id"] for a in json.loads(done.stdout)["agents"]}

        everyone = {live.id, stale.id, other.id}
        assert await asyncio.to_thread(ids) == everyone                       # the default is --any
        assert await asyncio.to_thread(ids, "--any") == everyone              # was: stale ones only
        assert await asyncio.to_thread(ids, "--live") == {live.id, other.id}
        assert await asyncio.to_thread(ids, "--stale") == {stale.id}
        assert await asyncio.to_thread(ids, "--org", "acme") == {live.id, stale.id}  # by the name tables show
        assert await asyncio.to_thread(ids, "--org", acme.key.did) == {live.id, stale.id}
        assert await asyncio.to_thread(ids, "--org", "nobody") == set()
        table = await asyncio.to_thread(guildnet, "registry", "search", "--skill", "echo", "--live",
                                        env={"GUILDNET_REGISTRY": url})
        assert "A2A" in table.stdout.splitlines()[0]
        assert "http://127.0.0.1:9/agents/echo/a2a" in table.stdout                  # README promises endpoints
