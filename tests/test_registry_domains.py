"""The registry's domain marks over real sockets, on SQLite and PostgreSQL: checked at registration, served with
every record (get and search), re-checked on a schedule and withdrawn after repeated failures."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from domain_support import Domains, domains
from registry_support import Org, bump, live_registry, new_org

from guildnet.protocols.agentfacts import AgentFacts
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import RegistryClient
from guildnet.registry.state import DOMAINS


def claiming(org: Org, name: str, domain: str, **extra: Any) -> tuple[SigningKey, AgentFacts]:
    key, facts = org.agent(name, **extra)
    return key, bump(facts, organisation={**facts.to_json()["organisation"], "domain": domain})


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_a_proven_domain_is_marked_verified_on_every_record(db_url: str, tmp_path: Path) -> None:
    acme = new_org("acme")
    async with domains(tmp_path) as world:
        world.prove_by_dns("acme.example", acme.key)
        async with live_registry(db_url, domain_lookup=world.settings) as registry, \
                RegistryClient(registry.url) as client:
            key, facts = claiming(acme, "billing", "acme.example")
            answer = await client.register(facts, key)
            assert answer["domain"]["status"] == "verified" and answer["domain"]["method"] == "dns"
            entry = await client.get(facts.id)
            assert entry.domain is not None and entry.domain.verified and entry.domain.method == "dns"
            assert entry.domain.verified_at == entry.domain.checked_at and entry.domain.failures == 0
            page = await client.search(skill="echo")
            assert [e.domain for e in page.agents] == [entry.domain]
            async with aiohttp.ClientSession() as http, http.get(f"{registry.url}/v1/agents/{facts.id}") as response:
                served = await response.json()
            assert served["domain"]["name"] == "acme.example" and served["domain"]["organisation"] == acme.key.did
            # an agent claiming no domain carries no mark
            plain_key, plain = acme.agent("plain")
            assert "domain" not in await client.register(plain, plain_key)
            assert (await client.get(plain.id)).domain is None


async def test_a_domain_claimed_without_proof_is_registered_but_never_marked_verified(db_url: str,
                                                                                     tmp_path: Path) -> None:
    acme, mallory = new_org("acme"), new_org("mallory")
    async with domains(tmp_path) as world:
        world.prove_by_dns("acme.example", acme.key)
        world.prove_by_https("globex.example", acme.key, now=time.time())
        async with live_registry(db_url, domain_lookup=world.settings) as registry, \
                RegistryClient(registry.url) as client:
            key, facts = claiming(mallory, "impostor", "acme.example")
            answer = await client.register(facts, key)
            assert answer["domain"]["status"] == "unverified"
            assert f"names other keys only ({acme.key.did})" in answer["domain"]["detail"]
            entry = await client.get(facts.id)
            assert entry.domain is not None and entry.domain.status == "unverified" and entry.domain.verified_at is None
            # a proof served for another domain, or by another organisation, does not count either
            key2, facts2 = claiming(mallory, "impostor2", "globex.example")
            assert (await client.register(facts2, key2))["domain"]["status"] == "unverified"
            # the honest organisation proves the same domain: its mark is its own
            honest_key, honest = claiming(acme, "billing", "acme.example")
            assert (await client.register(honest, honest_key))["domain"]["status"] == "verified"
            assert (await client.get(facts.id)).domain.status == "unverified"  # type: ignore[union-attr]


async def test_one_check_serves_every_agent_of_an_organisation(db_url: str, tmp_path: Path) -> None:
    acme = new_org("acme")
    async with domains(tmp_path) as world:
        world.prove_by_dns("acme.example", acme.key)
        async with live_registry(db_url, domain_lookup=world.settings) as registry, \
                RegistryClient(registry.url) as client:
            for i in range(5):
                key, facts = claiming(acme, f"a{i}", "acme.example")
                assert (await client.register(facts, key))["domain"]["status"] == "verified"
        assert world.zone.queries[("_guildnet.acme.example", "TXT")] == 1


async def _recheck(registry: Any, clock: Clock, world: Domains, hours: float = 7.0) -> None:
    clock.now += hours * 3600
    await registry.app[DOMAINS].recheck_due()


async def test_a_lost_proof_is_withdrawn_after_repeated_failures_and_a_restored_one_comes_back(
        db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    acme, globex = new_org("acme"), new_org("globex")
    clock = Clock()
    async with domains(tmp_path) as world:
        world.prove_by_dns("acme.example", acme.key)
        world.prove_by_dns("globex.example", globex.key)
        async with live_registry(db_url, domain_lookup=world.settings, clock=clock, domain_withdraw_after=3,
                                 domain_recheck_interval=6 * 3600) as registry, \
                RegistryClient(registry.url) as client:
            key, facts = claiming(acme, "billing", "acme.example", ttl_seconds=7 * 24 * 3600)
            await client.register(facts, key)
            revoked_key, revoked = claiming(globex, "gone", "globex.example", ttl_seconds=7 * 24 * 3600)
            await client.register(revoked, revoked_key)
            await client.revoke(revoked.id, revoked_key)
            world.unprove("acme.example")
            caplog.set_level(logging.INFO, logger="guildnet.registry.domains")
            for failures in (1, 2):
                await _recheck(registry, clock, world)
                mark = (await client.get(facts.id)).domain
                assert mark is not None and mark.status == "verified" and mark.failures == failures
            assert not [r for r in caplog.records if "withdrawn" in r.getMessage()]
            await _recheck(registry, clock, world)
            mark = (await client.get(facts.id)).domain
            assert mark is not None and mark.status == "withdrawn" and mark.failures == 3
            withdrawn = [r for r in caplog.records if "withdrawn" in r.getMessage()]
            assert len(withdrawn) == 1 and withdrawn[0].levelno == logging.WARNING
            assert "acme.example" in withdrawn[0].getMessage()
            world.prove_by_dns("acme.example", acme.key)
            await _recheck(registry, clock, world)
            mark = (await client.get(facts.id)).domain
            assert mark is not None and mark.status == "verified" and mark.failures == 0
            # a claim no unrevoked agent makes any more is not looked up again
            assert world.zone.queries[("_guildnet.globex.example", "TXT")] == 1


async def test_recent_failures_are_not_looked_up_again_at_each_registration(db_url: str, tmp_path: Path) -> None:
    mallory = new_org("mallory")
    clock = Clock()
    async with domains(tmp_path) as world, \
            live_registry(db_url, domain_lookup=world.settings, clock=clock) as registry, \
            RegistryClient(registry.url) as client:
        for i in range(3):
            key, facts = claiming(mallory, f"m{i}", "acme.example")
            assert (await client.register(facts, key))["domain"]["status"] == "unverified"
        assert world.zone.queries[("_guildnet.acme.example", "TXT")] == 1
        world.prove_by_dns("acme.example", mallory.key)  # it set the proof up after all
        clock.now += 61
        key, facts = claiming(mallory, "m3", "acme.example")
        assert (await client.register(facts, key))["domain"]["status"] == "verified"


async def guildnet(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "guildnet.cli", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_search_show_and_the_explorer_show_the_mark_and_show_checks_the_proof(tmp_path: Path) -> None:
    acme, mallory = new_org("acme"), new_org("mallory")
    async with domains(tmp_path) as world, \
            live_registry(f"sqlite+aiosqlite:///{tmp_path}/r.db", domain_lookup=world.settings) as registry, \
            RegistryClient(registry.url) as client:
        world.prove_by_dns("acme.example", acme.key)
        honest_key, honest = claiming(acme, "honest", "acme.example")
        impostor_key, impostor = claiming(mallory, "impostor", "acme.example")
        plain_key, plain = mallory.agent("plain")
        for key, facts in ((honest_key, honest), (impostor_key, impostor), (plain_key, plain)):
            await client.register(facts, key)
        lookups = ("--dns-server", str(world.settings.dns_server), "--domain-ca-file", str(world.settings.ca_file))
        (code, table, _), (good, shown, _), (bad, refused, _), (_, as_json, _) = await asyncio.gather(
            guildnet("registry", "search", "--registry", registry.url, "--skill", "echo"),
            guildnet("registry", "show", "--registry", registry.url, honest.id, "--check-domain", *lookups),
            guildnet("registry", "show", "--registry", registry.url, impostor.id, "--check-domain", *lookups),
            guildnet("registry", "show", "--registry", registry.url, impostor.id, "--json"))
        assert code == 0
        rows = {line.split()[0]: line for line in table.splitlines() if line.split()[:1] in (["honest"], ["impostor"],
                                                                                            ["plain"])}
        assert "acme.example ✓" in rows["honest"] and "acme.example ?" in rows["impostor"]
        assert rows["plain"].split()[2] == "-"
        assert good == 0 and "the registry says: verified by dns" in shown and "checked here: verified by dns" in shown
        assert bad == 1 and "the registry says: unverified" in refused and "checked here: NOT proven" in refused
        assert json.loads(as_json)["domain"]["status"] == "unverified"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{registry.url}/") as response:
                listing = await response.text()
            async with http.get(f"{registry.url}/agents/{honest.id}") as response:
                page = await response.text()
        assert "✓ acme.example" in listing and "? acme.example unverified" in listing
        assert 'class="badge domain-verified"' in page and "This is this registry's statement" in page


@pytest.mark.slow
async def test_registry_serve_takes_its_resolver_and_cas_from_its_config_file(tmp_path: Path) -> None:
    from registry_support import key_path_for, registry_process

    acme = new_org("acme")
    async with domains(tmp_path) as world:
        world.prove_by_dns("acme.example", acme.key)
        config = tmp_path / "registry.toml"  # the CA file's path is relative to the config file (it must exist)
        config.write_text(f'[registry]\ndns_server = "{world.settings.dns_server}"\ndomain_ca_file = "test-ca.pem"\n'
                          "domain_withdraw_after = 2\n")
        db_url = f"sqlite:///{tmp_path}/r.db"
        async with registry_process(db_url, "--config", str(config), "--key", key_path_for(db_url)) as url, \
                RegistryClient(url) as client:
            key, facts = claiming(acme, "billing", "acme.example")
            answer = await client.register(facts, key)
        assert answer["domain"]["status"] == "verified" and answer["domain"]["method"] == "dns"
        assert world.zone.queries[("_guildnet.acme.example", "TXT")] == 1  # the configured server was asked


async def test_a_claim_whose_check_did_not_finish_at_registration_is_checked_on_the_schedule(
        db_url: str, tmp_path: Path) -> None:
    acme = new_org("acme")
    clock = Clock()
    async with domains(tmp_path) as world, \
            live_registry(db_url, domain_lookup=world.settings, clock=clock) as registry, \
            RegistryClient(registry.url) as client:
        world.prove_by_dns("acme.example", acme.key)
        checker = registry.app[DOMAINS]

        async def broken(org: str, domain: str) -> Any:
            raise OSError("the store went away")

        checker.at_registration = broken  # type: ignore[method-assign]
        key, facts = claiming(acme, "billing", "acme.example")
        answer = await client.register(facts, key)
        assert "domain" not in answer and (await client.get(facts.id)).id == facts.id  # registered all the same
        assert (await client.get(facts.id)).domain is None
        assert await checker.recheck_due() == 1
        mark = (await client.get(facts.id)).domain
        assert mark is not None and mark.verified
        assert await checker.recheck_due() == 0  # not due again before the interval
