"""`make demo` runs examples/three_orgs.py: it must keep working, end to end, with the real embedded SLM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parent.parent / "examples" / "three_orgs.py"


@pytest.mark.slow
def test_the_demo_delegates_learns_reputation_and_runs_slm_first() -> None:
    done = subprocess.run([sys.executable, str(DEMO), "--rounds", "10"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    rounds = [parts for parts in map(str.split, out.splitlines()) if len(parts) > 2 and parts[0].isdigit()
              and parts[2] in ("ok", "failed")]
    assert [r[0] for r in rounds] == [str(n) for n in range(1, 11)]
    assert all(r[2] == "ok" for r in rounds)  # C fails every third task; A's delegator retried B each time
    # The headline: with no evidence A first tries C (cheaper); as receipts accumulate, C's failures keep its
    # reputation below the bar while B's clears it, and from then on A goes to B first, every round.
    first_tried = [r[7].split(":")[0] for r in rounds]  # the first of the round's attempts
    assert first_tried[0] == "c-translator" and first_tried[-3:] == ["b-translator"] * 3
    b_lower, c_lower = float(rounds[-1][3]), float(rounds[-1][5])
    assert b_lower >= 0.5 > c_lower
    assert "consistent with every earlier head" in out
    # SLM-first: every message was answered, by SmolLM2 or, escalated with a reason, by org B's peer.
    answers = out.split("answered by\n", 1)[1].split("\nsmollm2 kept", 1)[0].splitlines()
    assert len(answers) == 10
    assert all(a.endswith("smollm2") or "peer (low logprob: mean -" in a or "peer (smollm2" in a for a in answers)
    stored = next(line for line in out.splitlines() if line.startswith("stored process data"))
    assert "<PERSON>" in stored and "<EMAIL>" in stored and "Jane" not in stored and "jane.doe" not in stored
    sentiment = next(line.split() for line in out.splitlines() if line.startswith("sentiment "))
    assert sentiment[1] == "10" and sentiment[2] == "100.0%"  # one task per message, all completed
