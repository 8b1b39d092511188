"""docs/agents.md runs as written: an agent built from nothing, configured, published, called by another
organisation, and a model-backed agent listed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_quickstart import run_as_written

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "agents.md"


@pytest.mark.slow
def test_the_agents_page_runs_as_written(tmp_path: Path) -> None:
    out, stderr = run_as_written(PAGE, tmp_path, 7, ("GUILDNET_REGISTRY_PORT", "HELLO_PORT", "CALLER_PORT"),
                                 timeout=150)
    settings, code, configured, published, delegated, slm, _stopped = out
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
