"""The official MCP conformance suite and the Inspector CLI against the node's MCP endpoint.

Runs tests/conformance/run_mcp_conformance.sh (Node 22 and the npm packages are installed into
.cache/conformance on first use). Goal: every scenario of both revisions passes, the tasks extension (SEP-2663)
included.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "conformance"


@pytest.mark.slow
def test_mcp_conformance_both_revisions() -> None:
    result = subprocess.run(["bash", str(ROOT / "tests/conformance/run_mcp_conformance.sh")], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    legacy = (CACHE / "conformance-2025-11-25.txt").read_text()
    assert re.search(r"Total: 84 passed, 0 failed", legacy), legacy[-2000:]
    modern = (CACHE / "conformance-2026-07-28.txt").read_text()
    totals = re.search(r"Total: (\d+) passed, (\d+) failed", modern)
    assert totals, modern[-2000:]
    # every scenario passes, scored and unscored, the tasks extension's included (issue 14)
    assert totals.group(2) == "0", re.findall(r"✗ ([\w-]+):", modern)
    assert re.search(r"tasks-lifecycle: \d+ passed, 0 failed", modern), modern[-2000:]
    assert "inspector listed" in result.stdout
