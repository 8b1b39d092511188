"""Domain proofs: the TXT and well-known formats and the marks on values, and the one look-up adapter against a
real DNS server (dnslib) and a real HTTPS server (trustme's CA) on 127.0.0.1."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from domain_support import domains
from pydantic import ValidationError
from registry_support import new_org

from guildnet.protocols import jws
from guildnet.protocols.agentfacts import AgentFacts
from guildnet.protocols.domain import (
    MAX_WELL_KNOWN_BYTES,
    PROOF_TYP,
    DomainCheck,
    DomainMark,
    InvalidProofDocument,
    LookupFailed,
    check_domain,
    next_mark,
    orgs_in_txt,
    orgs_in_well_known,
    served_mark,
    sign_proof,
    txt_name,
    txt_record,
    well_known_document,
)
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import DomainLookupSettings, DomainResolver, parse_dns_server

NOW = 1_800_000_000.0


def test_the_txt_record_names_the_organisation_and_other_records_are_ignored() -> None:
    org, other = SigningKey.generate(), SigningKey.generate()
    assert txt_name("acme.example") == "_guildnet.acme.example"
    assert txt_record(org.did) == f"v=guildnet1; org={org.did}"
    records = [txt_record(org.did), "v=spf1 -all", f"v=guildnet2; org={other.did}", "v=guildnet1; org=did:key:zBad",
               f" V=guildnet1 ;org={other.did}; future=1 "]
    assert orgs_in_txt(records) == {org.did, other.did}
    assert orgs_in_txt(["v=spf1 -all"]) == frozenset()
    with pytest.raises(ValueError):
        txt_record("acme")


def test_a_well_known_proof_counts_only_for_its_domain_its_signer_and_its_lifetime() -> None:
    org, thief = SigningKey.generate(), SigningKey.generate()
    good = sign_proof(org, "acme.example", now=NOW)
    other_domain = sign_proof(org, "globex.example", now=NOW)
    expired = sign_proof(org, "acme.example", now=NOW - 100, lifetime=50)
    # a proof naming another organisation's key than the one that signed it
    borrowed = jws.sign({"domain": "acme.example", "org": org.did, "iat": int(NOW)}, thief, typ=PROOF_TYP)
    untyped = jws.sign({"domain": "acme.example", "org": org.did, "iat": int(NOW)}, org)

    def found(*proofs: str) -> frozenset[str]:
        return orgs_in_well_known(json.dumps(well_known_document(list(proofs))).encode(), "acme.example", now=NOW)

    assert found(good) == {org.did}
    assert found(other_domain, expired, borrowed, untyped, "not.a.jws") == frozenset()
    assert found(sign_proof(org, "acme.example", now=NOW, lifetime=3600)) == {org.did}
    for body in (b"[]", b"{}", b'{"proofs": [1]}', b"not json", b"[" * 10_000):
        with pytest.raises(InvalidProofDocument):
            orgs_in_well_known(body, "acme.example", now=NOW)
    with pytest.raises(InvalidProofDocument, match="larger"):
        orgs_in_well_known(b" " * (MAX_WELL_KNOWN_BYTES + 1), "acme.example", now=NOW)


def _check(verified: bool, at: float) -> DomainCheck:
    return DomainCheck("acme.example", "did:key:z6Mk", verified, "dns" if verified else None, at,
                       "ok" if verified else "DNS TXT names no organisation key")


def test_a_verified_mark_survives_failures_below_the_threshold_and_is_withdrawn_at_it() -> None:
    mark = next_mark(None, _check(True, 1.0), withdraw_after=3)
    assert (mark.status, mark.method, mark.verified_at, mark.failures) == ("verified", "dns", 1.0, 0)
    mark = next_mark(mark, _check(False, 2.0), withdraw_after=3)
    mark = next_mark(mark, _check(False, 3.0), withdraw_after=3)
    assert (mark.status, mark.failures, mark.verified_at, mark.checked_at) == ("verified", 2, 1.0, 3.0)
    mark = next_mark(mark, _check(False, 4.0), withdraw_after=3)
    assert (mark.status, mark.failures, mark.detail) == ("withdrawn", 3, "DNS TXT names no organisation key")
    assert next_mark(mark, _check(False, 5.0), withdraw_after=3).status == "withdrawn"
    assert next_mark(mark, _check(True, 6.0), withdraw_after=3).status == "verified"
    never = next_mark(None, _check(False, 1.0), withdraw_after=3)
    assert (never.status, never.verified_at, never.failures) == ("unverified", None, 1)
    assert next_mark(never, _check(False, 2.0), withdraw_after=1).status == "unverified"


def test_a_served_mark_counts_only_for_the_domain_and_organisation_the_facts_claim() -> None:
    acme, globex = new_org("acme"), new_org("globex")
    _, facts = acme.agent("a")
    data = facts.to_json()
    data["organisation"]["domain"] = "acme.example"
    claimed = AgentFacts.model_validate(data)
    mark = DomainMark("acme.example", acme.key.did, "verified", "dns", NOW, NOW, 0, "ok")
    assert served_mark(claimed.organisation, mark.to_json()) == mark
    assert DomainMark.from_json_text(mark.to_json_text()) == mark
    assert served_mark(claimed.organisation, replace(mark, org=globex.key.did).to_json()) is None
    assert served_mark(claimed.organisation, replace(mark, domain="globex.example").to_json()) is None
    assert served_mark(facts.organisation, mark.to_json()) is None  # the facts claim no domain
    for broken in ({**mark.to_json(), "status": "trusted"}, {**mark.to_json(), "failures": -1},
                   {**mark.to_json(), "checked_at": "yesterday"}, {"name": "acme.example"}, "verified"):
        assert served_mark(claimed.organisation, broken) is None


def test_organisation_domain_is_a_lower_case_dns_name() -> None:
    acme = new_org("acme")
    _, facts = acme.agent("a")
    for good in ("acme.example", "a.b.c.xn--p1ai", "xn--bcher-kva.example"):
        data = facts.to_json()
        data["organisation"]["domain"] = good
        assert AgentFacts.model_validate(data).organisation.domain == good
    for bad in ("Acme.example", "acme", "-a.example", "a..example", "acme.example.", "a" * 64 + ".example",
                ("a" * 60 + ".") * 4 + "com", "acme.example/path", "https://acme.example"):
        data = facts.to_json()
        data["organisation"]["domain"] = bad
        with pytest.raises(ValidationError):
            AgentFacts.model_validate(data)


def test_dns_server_settings_are_addresses() -> None:
    assert parse_dns_server("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_dns_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_dns_server("[::1]:5353") == ("::1", 5353)
    for bad in ("dns.example", "127.0.0.1:0", "127.0.0.1:x", "[::1]x"):
        with pytest.raises(ValueError):
            parse_dns_server(bad)
        with pytest.raises(ValueError):
            DomainLookupSettings(dns_server=bad)


async def test_the_resolver_reads_real_dns_and_https_answers_and_says_when_there_is_none(tmp_path: Path) -> None:
    org, other = SigningKey.generate(), SigningKey.generate()
    async with domains(tmp_path) as world:
        world.prove_by_dns("acme.example", org)
        world.prove_by_dns("acme.example", other)
        world.prove_by_https("globex.example", org, now=time.time())
        world.documents["initech.example"] = 500
        resolver = DomainResolver(world.settings)
        try:
            assert sorted(await resolver.txt("_guildnet.acme.example")) == sorted([txt_record(org.did),
                                                                                  txt_record(other.did)])
            assert await resolver.txt("_guildnet.nowhere.example") == []  # NXDOMAIN
            assert await resolver.txt("_guildnet.globex.example") == []  # the name exists, no TXT
            body = await resolver.well_known("globex.example")
            assert body is not None and orgs_in_well_known(body, "globex.example", now=time.time()) == {org.did}
            assert await resolver.well_known("acme.example") is None  # 404
            with pytest.raises(LookupFailed, match="HTTP 500"):
                await resolver.well_known("initech.example")
            world.documents["initech.example"] = {"proofs": ["x" * MAX_WELL_KNOWN_BYTES]}
            with pytest.raises(LookupFailed, match="larger"):
                await resolver.well_known("initech.example")
            world.zone.failing = True
            with pytest.raises(LookupFailed, match="SERVFAIL"):
                await resolver.txt("_guildnet.acme.example")
        finally:
            await resolver.close()
        # a certificate from a CA the resolver was not told to trust is no proof
        stranger = DomainResolver(replace(world.settings, ca_file=None))
        try:
            world.zone.failing = False
            with pytest.raises(LookupFailed, match=r"(?i)certificate"):
                await stranger.well_known("globex.example")
        finally:
            await stranger.close()


async def test_check_domain_proves_by_dns_then_https_and_explains_a_refusal(tmp_path: Path) -> None:
    acme, globex, mallory = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    async with domains(tmp_path) as world:
        world.prove_by_dns("acme.example", acme)
        world.prove_by_https("globex.example", globex, now=time.time())
        world.prove_by_https("initech.example", mallory, now=time.time(), claimed="acme.example")
        resolver = DomainResolver(world.settings)
        try:
            by_dns = await check_domain("acme.example", acme.did, resolver, now=NOW)
            assert (by_dns.verified, by_dns.method) == (True, "dns")
            assert world.fetches.get("acme.example") is None  # DNS sufficed: no HTTPS request
            by_https = await check_domain("globex.example", globex.did, resolver, now=time.time())
            assert (by_https.verified, by_https.method) == (True, "https")
            stolen = await check_domain("acme.example", mallory.did, resolver, now=NOW)
            assert not stolen.verified and stolen.method is None
            assert f"names other keys only ({acme.did})" in stolen.detail and "not found" in stolen.detail
            # a proof for acme.example served from initech.example proves nothing for either
            for domain in ("initech.example", "acme.example"):
                assert not (await check_domain(domain, mallory.did, resolver, now=time.time())).verified
            world.zone.failing = True
            outage = await check_domain("acme.example", acme.did, resolver, now=NOW)
            assert not outage.verified and "no answer" in outage.detail
        finally:
            await resolver.close()
    # nothing listens any more: look-ups fail within the timeout, and the check says so
    resolver = DomainResolver(DomainLookupSettings(dns_server=world.settings.dns_server, timeout=0.5))
    try:
        started = time.monotonic()
        gone = await check_domain("acme.example", acme.did, resolver, now=NOW)
        assert not gone.verified and time.monotonic() - started < 3.0
    finally:
        await resolver.close()


def test_keys_domain_proof_prints_proofs_that_verify(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from guildnet.cli.main import main
    from guildnet.protocols import keyfile

    org = SigningKey.generate()
    keyfile.save(org, tmp_path / "org.key")
    result = CliRunner().invoke(main, ["keys", "domain-proof", str(tmp_path / "org.key"), "acme.example", "--json",
                                       "--lifetime-days", "30"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed["txt_name"] == "_guildnet.acme.example"
    assert printed["url"] == "https://acme.example/.well-known/guildnet-org.json"
    assert orgs_in_txt([printed["txt"]]) == {org.did}
    body = json.dumps(printed["document"]).encode()
    assert orgs_in_well_known(body, "acme.example", now=time.time()) == {org.did}
    assert orgs_in_well_known(body, "acme.example", now=time.time() + 31 * 86400) == frozenset()
    refused = CliRunner().invoke(main, ["keys", "domain-proof", str(tmp_path / "org.key"), "https://acme.example"])
    assert refused.exit_code == 2 and "not a lower-case DNS name" in refused.output
