"""The registry's word index (registry/store/words.py) alone, in this process: build time and memory for N agents
of the bench's prefill text, search CPU for rare and common words, and what following writes costs: a commit of
k pending changes, and a search while P changes are pending (matched and scored in Python).

    python bench/word_index.py [--agents 1000000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from prefill import agents as prefill_agents

from guildnet.registry.store.words import AgentText, WordIndex, words_query

SKILLS = [f"skill-{i:03d}" for i in range(100)]
WORDS = [f"w{i:04d}" for i in range(2000)]
COMMON_WORDS = ["translate", "invoice", "summarise", "classify", "extract", "support", "legal", "finance"]


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def texts(count: int, seed: int = 11) -> list[AgentText]:
    orgs = [f"did:key:zorg{i}" for i in range(50)]
    return [AgentText(r["pk"], r["name"], r["tags"], r["description"], r["org_id"], r["org_name"], tuple(r["skills"]))
            for r in prefill_agents(count, orgs, SKILLS, WORDS, COMMON_WORDS, seed=seed)]


def timed(index: WordIndex, queries: list[str], depth: int, repeats: int = 3, **where: str) -> str:
    samples = []
    for _ in range(repeats):
        for q in queries:
            query = words_query(q, skill=where.get("skill"), org=where.get("org"))
            assert query is not None
            started = time.process_time()
            index.search(query, depth)
            samples.append((time.process_time() - started) * 1000)
    samples.sort()
    return f"CPU p50 {statistics.median(samples):.3f} ms, p99 {samples[int(len(samples) * 0.99)]:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1_000_000)
    args = parser.parse_args()
    pages = texts(args.agents)
    before = rss_mib()
    started, cpu = time.perf_counter(), time.process_time()
    index = WordIndex(0, postgres=False)
    for start in range(0, len(pages), 20_000):
        index.add(pages[start:start + 20_000])
    index.open()
    print(f"built {args.agents:,} agents in {time.perf_counter() - started:.1f} s ({time.process_time() - cpu:.1f} s "
          f"CPU in this thread), RSS +{rss_mib() - before:.0f} MiB")
    del pages
    print("rare word, top 21:  ", timed(index, WORDS[:100], 21))
    print("common word, top 21:", timed(index, COMMON_WORDS, 21))
    print("common word, top 100:", timed(index, COMMON_WORDS, 100))
    print("common + skill, 100:", timed(index, COMMON_WORDS, 100, skill=SKILLS[3]))
    rng = random.Random(5)
    position = 0
    for pending in (10, 100, 1000):
        changed = [(pk, AgentText(pk, f"changed-{pk}", "skill-003", f"{rng.choice(COMMON_WORDS)} {rng.choice(WORDS)}",
                                  "did:key:zorg1", "org-1", ("skill-003",)))
                   for pk in rng.sample(range(1, args.agents + 1), pending)]
        assert index.apply(position, position + 1, changed)
        position += 1
        print(f"{pending} pending: common word, top 21:", timed(index, COMMON_WORDS, 21))
        started = time.perf_counter()
        index.commit()
        print(f"{pending} pending: commit {(time.perf_counter() - started) * 1000:.1f} ms (wall)")
    print(f"RSS {rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
