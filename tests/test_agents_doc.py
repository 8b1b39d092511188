"""docs/agents.md runs as written: an agent built from nothing, configured, published, called by another
organisation, and a model-backed agent listed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from registry_support import free_port
from test_quickstart import MARK, bash_blocks

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "agents.md"


@pytest.mark.slow
def test_the_agents_page_runs_as_written(tmp_path: Path) -> None:
    blocks = bash_blocks(PAGE.read_text())
    assert len(blocks) == 7, "update this test's per-block checks when the page changes"
    venv_bin = f"{Path(sys.executable).parent}/"
    script = "\n".join(f"{block.replace('.venv/bin/', venv_bin)}\necho '{MARK}'" for block in blocks)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUILDNET_")}
    env.update(WORK=str(tmp_path / "work"), GUILDNET_REGISTRY_PORT=str(free_port()), HELLO_PORT=str(free_port()),
               CALLER_PORT=str(free_port()))
    process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=150)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    work = tmp_path / "work"
    logs = "".join(p.read_text() for p in work.rglob("*.log")) if work.exists() else ""
    assert process.returncode == 0, f"{stdout[-3000:]}\n{stderr[-3000:]}\n{logs[-3000:]}"
    settings, code, configured, published, delegated, slm, _stopped = (p.strip() for p in stdout.split(MARK)[:7])
    assert settings == "" and code == ""
    assert "warn  org key" in configured and "all checks passed" in configured         # doctor: keys not yet made
    assert "skill greet: MCP tool greet" in configured and "root agent card: greeter's" in configured
    assert re.search(r"^greeter\s+hello-org\s+yes\s+greet\s+did:key:\S+\s+http://127.0.0.1:\d+/agents/greeter/a2a$",
                     published, re.M), published
    first, *rest = delegated.splitlines()
    assert json.loads(first) == {"text": "Bonjour, Ada"}
    assert rest == ["exit 1", "exit 2"], delegated
    assert "no greeting in 'de' yet: use en or fr" in stderr                           # the SkillError's message
    assert "greeter: greeting Ada" in stderr                                           # the progress, streamed
    assert "'name' is a required property" in stderr and "nobody was called" in stderr
    listed = json.loads(slm)
    assert listed["agents"][0]["skills"] == [{"id": "sentiment", "mcp_tool": "sentiment"}]
