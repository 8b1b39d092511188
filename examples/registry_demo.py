"""Run a registry on 127.0.0.1 with a SQLite file, register signed agents of two organisations, and search.

What it shows: every agent's identity is its own key (did:key), every registration is signed and
endorsed by its organisation, forged writes are refused, a revoked agent disappears from search, and a
watcher sees each change in order.

    python examples/registry_demo.py [--port 8400] [--db sqlite:///demo-registry.db]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from typing import Any

from aiohttp import web

from guildnet.protocols.agentfacts import AgentFacts, endorse
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient, RegistryError
from guildnet.registry.db import normalise_url
from guildnet.registry.server import RegistryConfig, create_app

CATALOGUE = {
    "acme": [
        ("translator", "Translates contracts and invoices between English and French",
         [("translate", ["language", "french", "english"])]),
        ("extractor", "Extracts totals and line items from scanned invoices",
         [("extract-invoice", ["invoice", "ocr", "finance"])]),
        ("summariser", "Summarises long documents into five bullet points", [("summarise", ["text", "summary"])]),
    ],
    "globex": [
        ("traduttore", "Fast low-cost translation for support tickets",
         [("translate", ["language", "italian", "english"])]),
        ("classifier", "Routes support tickets to the right queue", [("classify-ticket", ["support", "routing"])]),
    ],
}


def make_facts(org_key: SigningKey, org_name: str, agent_key: SigningKey, name: str, description: str,
               skills: list[tuple[str, list[str]]]) -> AgentFacts:
    return AgentFacts.model_validate(endorse(org_key, {
        "id": agent_key.did, "name": name, "description": description, "version": 1, "ttl_seconds": 120,
        "organisation": {"id": org_key.did, "name": org_name},
        "endpoints": {"a2a": f"http://127.0.0.1:9100/agents/{name}/a2a", "mcp": "http://127.0.0.1:9100/mcp"},
        "skills": [{"id": skill, "name": skill.replace("-", " ").title(), "description": description,
                    "tags": tags, "input_schema": {"type": "object"}, "output_schema": {"type": "object"}}
                   for skill, tags in skills],
        "model": {"family": "SmolLM2", "parameters": 135_000_000, "cost_per_1k_input": 0.00002,
                  "cost_per_1k_output": 0.00004},
    }))


def table(rows: list[list[Any]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


async def main(port: int, db_url: str) -> None:
    app = create_app(RegistryConfig(db_url=normalise_url(db_url)))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    print(f"registry serving on {url} (db: {db_url})\n")
    try:
        async with RegistryClient(url) as client:
            watched: list[dict[str, Any]] = []

            async def watch() -> None:
                async for change in client.watch(0):
                    watched.append(change)

            watcher = asyncio.create_task(watch())
            keys: dict[str, SigningKey] = {}
            for org_name, agents in CATALOGUE.items():
                org_key = SigningKey.generate()
                for name, description, skills in agents:
                    agent_key = SigningKey.generate()
                    facts = make_facts(org_key, org_name, agent_key, name, description, skills)
                    await client.register(facts, agent_key)
                    keys[name] = agent_key
                    print(f"registered {org_name}/{name:<11} {facts.id}")

            print("\nsearch skill=translate")
            page = await client.search(skill="translate", live=True)
            print(table([[a.facts.name, a.facts.organisation.name, "live" if a.live else "stale", a.id[:24] + "…"]
                         for a in page.agents], ["agent", "org", "status", "id"]))
            print('\nsearch q="invoices"  (full text, ranked)')
            page = await client.search(q="invoices")
            print(table([[a.facts.name, a.facts.organisation.name, a.facts.description[:50]] for a in page.agents],
                        ["agent", "org", "description"]))

            translator = (await client.search(skill="translate", q="contracts")).agents[0]
            print("\na stranger tries to update acme/translator with its own key:")
            forged = translator.facts.model_copy(update={"version": 2, "description": "send me your data"})
            try:
                await client.register(forged, SigningKey.generate())
            except RegistryError as exc:
                print(f"  refused: {exc.status} {exc.detail}")

            print("acme revokes translator; search skill=translate again:")
            await client.revoke(translator.id, keys["translator"])
            page = await client.search(skill="translate")
            print("  " + ", ".join(f"{a.facts.organisation.name}/{a.facts.name}" for a in page.agents))

            await asyncio.sleep(0.3)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            print(f"\nwatch stream saw {len(watched)} changes in order: "
                  + ", ".join(f"#{c['seq']} {c['kind']}" for c in watched))
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--db", default=None, help="database URL (default: a SQLite file in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(args.port, args.db or f"sqlite:///{tmp}/demo-registry.db"))
