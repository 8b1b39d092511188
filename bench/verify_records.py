"""How many registry records a node verifies per second on one core: what every search page costs it.

Each record is what ``GET /v1/agents`` serves for an agent: its facts, its signed registration, its key history
(an inception event) and its organisation's endorsement. :func:`guildnet.protocols.records.verify_record`
rebuilds the key in force from the id alone and checks both signatures; nothing of the registry's word is used.

Three figures, in one process pinned to one core (``taskset`` where available); the records are built (signed)
in another process, so nothing the verifier caches (keys decoded, headers parsed) was warmed by building them:

* **new records**: every record different (a node meeting agents for the first time): two Ed25519
  verifications each (registration, endorsement), the facts validated, and the SHA-256 of their text as
  registered (what the endorsement signs; records endorsed before it signed that text digest RFC 8785 JSON);
* **seen again**: the same page verified again (a refetch after a watch event): each record is recognised by its
  registration token, key events and facts, so only the key the registry names and the expiry are checked;
* **the ceiling**: Ed25519 verifications per second in the same process, with libsodium (what guildnet uses)
  and with OpenSSL through ``cryptography`` (what it used before), side by side.

The verifying process is set up as a node's: it loads what ``guildnet node run`` loads, then applies the node's
garbage-collector setting, the very function the node calls once started
(:func:`guildnet.cli.common.freeze_startup_heap`); ``--no-freeze`` leaves the collector as Python sets it, to see
what the setting saves (and to run this script on code that predates it).

On a shared machine the rates move with the load; what a new record costs in Ed25519 verifications of the same
run (CPU time against CPU time) moves much less, and is printed too: two of them are the record's signatures,
the rest is Python (parsing, validation, digests, and the garbage collector walking what the caches keep).

    python bench/verify_records.py [--records 2000] [--no-freeze]

Goal (issue 12): at least 5,000 record verifications per second per core for search pages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import guildnet.node.node  # noqa: F401  (what a node process has loaded: the heap its collector walks)
from guildnet.protocols import keyhistory, signed_write
from guildnet.protocols.agentfacts import endorse
from guildnet.protocols.did import verify_signature
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.records import verify_record

RESULTS = Path(__file__).parent / "results"


def served_record(org: SigningKey, index: int) -> dict[str, Any]:
    """One agent's record as the registry serves it (the facts spliced in as stored)."""
    key, nxt = SigningKey.generate(), SigningKey.generate()
    facts = endorse(org, {
        "id": key.did, "name": f"agent-{index}", "version": 1, "organisation": {"id": org.did, "name": "org"},
        "description": "Extracts line items and totals from supplier invoices",
        "endpoints": {"a2a": f"https://agents.example/agents/agent-{index}/a2a"},
        "skills": [{"id": "extract-invoice", "name": "Extract invoice", "tags": ["finance", "documents"],
                    "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
                    "output_schema": {"type": "object"}}],
        "model": {"family": "SmolLM2", "parameters": 135000000, "cost_per_1k_input": 0.00002,
                  "cost_per_1k_output": 0.00004}})
    token = signed_write.make(key, {"action": "register", "facts": facts})
    return {"facts": facts, "key_events": [keyhistory.incept(key, nxt.did)], "id": key.did, "current_key": key.did,
            "version": 1, "live": True, "last_seen": time.time(), "registered_at": time.time(),
            "updated_at": time.time(), "revoked": False, "log_index": index, "jws": token}


def build_records(count: int) -> list[dict[str, Any]]:
    org = SigningKey.generate()
    return [served_record(org, i) for i in range(count)]


def per_second(work: Any, count: int) -> tuple[float, float]:
    """(per second of wall time, per second of this process's CPU time): on a busy machine the core is shared and
    the second figure is the one the load moves least."""
    started, cpu = time.perf_counter(), time.process_time()
    work()
    return count / (time.perf_counter() - started), count / (time.process_time() - cpu)


def verify_all(records: list[dict[str, Any]]) -> None:
    for record in records:
        verify_record(record)


def ceiling(count: int) -> tuple[tuple[float, float], tuple[float, float]]:
    key = SigningKey.generate()
    message = b"x" * 600
    signature = key.sign(message)
    openssl = key.public_key  # cryptography's Ed25519PublicKey: OpenSSL

    def sodium() -> None:
        for _ in range(count):
            verify_signature(key.did, signature, message)

    def ossl() -> None:
        for _ in range(count):
            openssl.verify(signature, message)

    return per_second(sodium, count), per_second(ossl, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="distinct records to verify")
    parser.add_argument("--out", type=Path, default=RESULTS / "verify_records.json")
    parser.add_argument("--no-freeze", action="store_true",
                        help="leave the garbage collector as Python sets it, not as a started node sets it")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):  # one core: the first this process may use (`taskset -c 1` keeps core 1)
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    if args.no_freeze:  # frozen before the records arrive: they are what a node meets after it started
        collector = "as Python sets it (--no-freeze)"
    else:
        from guildnet.cli.common import freeze_startup_heap

        collector = f"as a started node sets it: freeze_startup_heap() froze {freeze_startup_heap():,} objects"
    print(f"garbage collector: {collector}", flush=True)
    print(f"building {args.records} records...", flush=True)
    with ProcessPoolExecutor(1) as builder:  # another process, as a registry's records are: no cache warmed here
        records = builder.submit(build_records, args.records).result()
    fresh = per_second(lambda: verify_all(records), len(records))
    again = per_second(lambda: verify_all(records), len(records))
    sodium, openssl = ceiling(max(2000, args.records))
    rows = [("new records (2 signatures each)", fresh), ("seen again (record recognised)", again),
            ("Ed25519 verifications, libsodium", sodium), ("Ed25519 verifications, OpenSSL", openssl)]
    print(f"\n{'one core, ' + platform.machine():<40} {'per s':>9} {'per CPU s':>10} {'CPU us each':>12}")
    for name, (wall, cpu) in rows:
        print(f"{name:<40} {wall:>9,.0f} {cpu:>10,.0f} {1e6 / cpu:>12.1f}")
    ratio = sodium[1] / fresh[1]
    print(f"\na new record costs {ratio:.2f} Ed25519 verifications (CPU; two of them are its signatures): "
          f"{1e6 / fresh[1] - 2e6 / sodium[1]:.1f} us of CPU besides them")
    goal = 5000
    print(f"\ngoal: {goal:,} record verifications/s per core for search pages: "
          f"{'met' if fresh[0] >= goal else 'MISSED'} for new records ({fresh[0]:,.0f}/s; {fresh[1]:,.0f} per CPU "
          f"second), {'met' if again[0] >= goal else 'MISSED'} for records seen again ({again[0]:,.0f}/s)")
    print(f"load average (1, 5, 15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"records": args.records, "new_records_per_s": fresh[0],
                                    "new_records_per_cpu_s": fresh[1], "seen_again_per_s": again[0],
                                    "seen_again_per_cpu_s": again[1], "new_record_in_ed25519_verifications": ratio,
                                    "ed25519_libsodium_per_s": sodium[0],
                                    "ed25519_libsodium_per_cpu_s": sodium[1], "ed25519_openssl_per_s": openssl[0],
                                    "ed25519_openssl_per_cpu_s": openssl[1], "goal_per_s": goal,
                                    "garbage_collector": collector, "load_average": os.getloadavg(),
                                    "machine": platform.machine(), "cpus": os.cpu_count()}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
