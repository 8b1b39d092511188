"""Domains for tests: a real DNS server (dnslib) and a real HTTPS server (trustme's throw-away CA) on 127.0.0.1.

``domains(tmp_path)`` yields a :class:`Domains` world: set TXT records and well-known documents per domain, and
pass :attr:`Domains.settings` to whatever looks proofs up (registry config, node, ``DomainResolver``). Every
domain the world knows resolves (A record) to 127.0.0.1, where the HTTPS server answers for all of them with one
certificate naming each.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web
from dnslib import QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from guildnet.protocols.domain import WELL_KNOWN_PATH, sign_proof, txt_name, txt_record, well_known_document
from guildnet.protocols.keys import SigningKey
from guildnet.registry.client import DomainLookupSettings

KNOWN_DOMAINS = ("acme.example", "globex.example", "initech.example")
"""Names the test certificate covers (the HTTPS server answers for these only)."""


@dataclass
class Zone(BaseResolver):  # type: ignore[misc]
    """What the DNS server answers: TXT records by name; A 127.0.0.1 for every known domain; SERVFAIL for all
    while ``failing``; NXDOMAIN otherwise. ``queries`` counts the questions by (name, type)."""

    txt: dict[str, list[str]] = field(default_factory=dict)
    failing: bool = False
    queries: dict[tuple[str, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        with self.lock:
            self.queries[(name, kind)] = self.queries.get((name, kind), 0) + 1
            records = list(self.txt.get(name, ()))
        if self.failing:
            reply.header.rcode = RCODE.SERVFAIL
        elif kind == "TXT" and records:
            for record in records:
                reply.add_answer(RR(name, QTYPE.TXT, rdata=TXT(record), ttl=60))
        elif kind == "A" and name in KNOWN_DOMAINS:
            reply.add_answer(RR(name, QTYPE.A, rdata=A("127.0.0.1"), ttl=60))
        elif not (name in KNOWN_DOMAINS or name in self.txt):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@dataclass
class Domains:
    zone: Zone
    settings: DomainLookupSettings
    documents: dict[str, Any] = field(default_factory=dict)
    """Per domain: the well-known document (served as JSON), or an int: that HTTP status, empty body."""
    fetches: dict[str, int] = field(default_factory=dict)

    def prove_by_dns(self, domain: str, org: SigningKey | str) -> None:
        did = org if isinstance(org, str) else org.did
        self.zone.txt.setdefault(txt_name(domain), []).append(txt_record(did))

    def prove_by_https(self, domain: str, org: SigningKey, *, now: float, claimed: str | None = None) -> None:
        """Serve a proof signed by ``org`` naming ``claimed`` (default: ``domain`` itself)."""
        proofs = self.documents.get(domain, {"proofs": []})["proofs"]
        self.documents[domain] = well_known_document([*proofs, sign_proof(org, claimed or domain, now=now)])

    def unprove(self, domain: str) -> None:
        self.zone.txt.pop(txt_name(domain), None)
        self.documents.pop(domain, None)


async def _well_known(request: web.Request) -> web.Response:
    world: Domains = request.app[WORLD]
    host = (request.host or "").rsplit(":", 1)[0]
    world.fetches[host] = world.fetches.get(host, 0) + 1
    document = world.documents.get(host)
    if document is None:
        return web.Response(status=404)
    if isinstance(document, int):
        return web.Response(status=document)
    return web.Response(text=json.dumps(document), content_type="application/json")


WORLD = web.AppKey("world", Domains)


@contextlib.asynccontextmanager
async def domains(tmp_path: Path, *, lookup_timeout: float = 2.0) -> AsyncIterator[Domains]:
    """The DNS server (UDP, 127.0.0.1) and the HTTPS server, with settings that point look-ups at both."""
    import ssl

    zone = Zone()
    dns_server = DNSServer(zone, address="127.0.0.1", port=0, logger=DNSLogger("-request,-reply,-truncated,"
                                                                               "-error,-recv,-send,-data"))
    dns_server.start_thread()
    dns_port = dns_server.server.server_address[1]
    ca = trustme.CA()
    ca_file = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*KNOWN_DOMAINS).configure_cert(context)
    world = Domains(zone, DomainLookupSettings())
    app = web.Application()
    app[WORLD] = world
    app.router.add_get(WELL_KNOWN_PATH, _well_known)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    world.settings = DomainLookupSettings(dns_server=f"127.0.0.1:{dns_port}", ca_file=str(ca_file),
                                          timeout=lookup_timeout, https_port=runner.addresses[0][1])
    try:
        yield world
    finally:
        await runner.cleanup()
        dns_server.stop()
        dns_server.server.server_close()
