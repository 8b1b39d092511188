"""docs/quickstart.md runs as written, and every CLI command documents itself with an example."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import click
import pytest
from registry_support import free_port

from guildnet.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.md"
MARK = "@@@ end of block"


def bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", markdown, re.DOTALL | re.MULTILINE)


def run_as_written(page: Path, tmp_path: Path, blocks: int, ports: tuple[str, ...],
                   timeout: float = 120) -> tuple[list[str], str]:
    """Run ``page``'s bash blocks in order in one ``bash -euo pipefail`` at the repository root, as its "How this
    page is tested" section says (``WORK`` a temporary folder, ``ports`` free ones, ``.venv/bin/`` this Python's
    folder); return each block's stdout, stripped, and the whole stderr."""
    found = bash_blocks(page.read_text())
    assert len(found) == blocks, "update this test's per-block checks when the page changes"
    venv_bin = f"{Path(sys.executable).parent}/"  # the documented substitution for `.venv/bin/`
    script = "\n".join(f"{block.replace('.venv/bin/', venv_bin)}\necho '{MARK}'" for block in found)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUILDNET_")}
    env.update(WORK=str(tmp_path / "work"), **{name: str(free_port()) for name in ports})
    # its own process group, so the background servers it starts are stopped even if a block fails
    process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    work = tmp_path / "work"
    logs = "".join(p.read_text() for p in work.rglob("*.log")) if work.exists() else ""
    assert process.returncode == 0, f"{stdout[-3000:]}\n{stderr[-3000:]}\n{logs[-3000:]}"
    return [part.strip() for part in stdout.split(MARK)[:blocks]], stderr


@pytest.mark.slow
def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    out, _ = run_as_written(QUICKSTART, tmp_path, 8, ("GUILDNET_REGISTRY_PORT", "GUILDNET_NODE_PORT", "GLOBEX_PORT"))
    work = tmp_path / "work"
    settings, registry, node, found, delegated, reputation, metrics, _stopped = out
    assert settings == ""
    assert json.loads(registry) == {"status": "ready"}                                # job 1: a registry
    assert json.loads(node) == {"status": "ready"}                                    # job 2: a published agent
    acme_agent = re.search(r"^echo\s+acme\s+yes\s+echo\s+(did:key:\S+)\s+http://127.0.0.1:\d+/agents/echo/a2a$",
                           found, re.M)
    assert "all checks passed" in found and acme_agent is not None
    answer = json.loads(delegated.split("\n", 1)[1])                                  # job 3: a delegated task
    assert answer["output"] == {"text": "hello from globex"} and answer["agent"] == acme_agent.group(1)
    assert answer["organisation"]["name"] == "acme" and answer["receipt_state"] == {"state": "filed"}
    assert re.search(r"^    reputation: 0\.\d+, lower bound 0\.\d+, evidence [\d.]+ from 1 receipt\(s\)$", reputation,
                     re.M), reputation                                                # rated by pre-trusted globex
    assert 'guildnet_registry_writes_total{action="receipt",outcome="accepted"} 1.0' in metrics
    assert "guildnet_registry_log_size 3.0" in metrics                                # 2 agents, 1 receipt
    assert 'guildnet_node_a2a_tasks_total{agent="echo",state="completed"} 1.0' in metrics
    lines = [json.loads(line) for line in (work / "registry.log").read_text().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


PRINTS_DATA = {("keys", "new"), ("keys", "show"), ("registry", "search"), ("registry", "show"), ("node", "retire"),
               ("delegate",), ("doctor",), ("flywheel", "report"), ("flywheel", "clusters")}


@pytest.mark.parametrize(("path", "command"), commands(main), ids=lambda v: " ".join(v) if isinstance(v, tuple)
                         else "")
def test_every_command_has_help_with_an_example(path: tuple[str, ...], command: click.Command) -> None:
    with click.Context(command, info_name=" ".join(("guildnet", *path))) as ctx:
        text = command.get_help(ctx)
    assert "Example" in text, f"guildnet {' '.join(path)} --help shows no example"
    assert re.search(r"^\s+guildnet " + re.escape(" ".join(path)), text, re.M), "the example runs this command"
    if path in PRINTS_DATA:
        assert "--json" in text
