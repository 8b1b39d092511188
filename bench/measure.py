"""What every benchmark measures the same way: percentiles, and a process's CPU time and memory from /proc."""

from __future__ import annotations

import math
import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` and of its descendants still running (a registry's verifier workers), from
    /proc (0 where it is missing)."""
    children: list[str] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += (task / "children").read_text().split()
    except OSError:
        pass
    return cpu_seconds(pid) + sum(tree_cpu_seconds(int(child)) for child in children)


def processes_cpu_seconds(name: str) -> float:
    """CPU time of every running process whose command is ``name`` (``postgres``: the database server's
    backends, whichever database they serve, so nothing else may use the server while it is measured; a backend
    that exits in between takes its time with it, so measure with long-lived connections)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    total += cpu_seconds(int(entry.name))
            except OSError:
                continue
    return total


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MiB (0 where /proc is missing)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    except OSError:
        return 0.0
