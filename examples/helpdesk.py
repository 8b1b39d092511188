"""Org A's helpdesk, shared by `make demo`'s flywheel cycle (three_orgs.py) and the history it trains on
(helpdesk_history.py): the ticket classifier of the benchmarks, and the hosted 70B that answered it before A
had a small model.

The skill, the tickets and the 70B are the benchmark's own (bench/slm_routing.py, bench/tickets.py): support
tickets in four categories from 24 templates, and a scripted OpenAI-compatible server standing in for a 70B
that is right on 95 % of them. Reused rather than copied, so the demo's cycle is the benchmarked one at a
smaller scale.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))  # the benchmarks are scripts, not a package

from flywheel_cycle import novel_examples  # noqa: E402
from slm_routing import LARGE, SKILL, SPEC, script_large, scripted_app, serve  # noqa: E402
from tickets import Ticket, tickets  # noqa: E402

from guildnet.node.flywheel.models import ModelStore  # noqa: E402
from guildnet.node.slm import OpenAIChatBackend  # noqa: E402

__all__ = ["SKILL", "SPEC", "Ticket", "free_port", "hosted_70b", "novel_examples", "prepared_history", "ticket_stream"]

SEED = 1
"""The benchmark's ticket stream and 70B script (bench/flywheel_cycle.py's default seed)."""


def ticket_stream(count: int) -> list[Ticket]:
    """The helpdesk's tickets in the order they arrive: the history is the first ones, the demo's live
    tickets the ones after it."""
    stream: list[Ticket] = tickets(count, seed=SEED)
    return stream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def hosted_70b(mix: Sequence[Ticket]) -> AsyncIterator[OpenAIChatBackend]:
    """The 70B A pays for, as a backend: the benchmark's scripted server answering ``mix`` (right on 95 %), on
    127.0.0.1, priced at Groq's list price for Llama-3.3-70B."""
    async with serve(scripted_app(script_large(mix, SEED))) as url, \
            OpenAIChatBackend(url, LARGE[0], price=LARGE[1], timeout=120, family="Llama-3.3",
                              parameters=70_000_000_000) as backend:
        yield backend


def prepared_history(prepared: Path) -> tuple[str, Path, int] | None:
    """(candidate id, its folder, tasks in the history it learnt from) of the adapter ``make`` prepared in
    ``prepared`` (the Makefile's $(FLYWHEEL_DEMO)), or None if it has not been built."""
    store = ModelStore(prepared / "models", SKILL.id)
    if not (prepared / "trained").is_file() or not store.candidates():
        return None
    candidate = store.candidates()[-1]
    folder = store.candidate(candidate)
    manifest = json.loads((folder / "manifest.json").read_text())
    tasks = manifest["train"]["rows"] + manifest["validation"]["rows"] + manifest["skipped_unsuccessful"]
    return candidate, folder, tasks
