"""The look-ups a domain proof needs (:class:`~guildnet.protocols.domain.DomainLookups`), over the network.

The registry (at registration and on its schedule), the node (before it ranks a candidate of an organisation that
must have a verified domain) and the CLI (``registry show --check-domain``) all check proofs with this one adapter;
the node reaches it through :mod:`.client`, the one registry module it may import. What the answers mean is
decided in :mod:`guildnet.protocols.domain`.

* DNS through dnspython's asyncio resolver: the system's resolver by default, or one named server and port
  (``dns_server``), which also resolves the host of the HTTPS proof, so one setting points every look-up at a
  test server or an internal resolver.
* HTTPS through aiohttp: the certificate must be valid for the domain under the system's CAs (or ``ca_file``),
  redirects are not followed (a proof is served by the domain itself), and the body is read up to
  :data:`~guildnet.protocols.domain.MAX_WELL_KNOWN_BYTES` only.

Neither lookup validates DNSSEC: like the MCP registry's DNS proofs, the answer is as good as the resolver's.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass

import aiohttp
import dns.asyncresolver
import dns.exception
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from guildnet.protocols.domain import MAX_WELL_KNOWN_BYTES, LookupFailed, well_known_url


def parse_dns_server(text: str) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (an IPv6 host in brackets) to (address, port); ``ValueError`` if not one."""
    host, port = text.strip(), 53
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r} is not HOST or HOST:PORT")
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, raw = host.partition(":")
        port = int(raw)
    ipaddress.ip_address(host)  # dnspython takes addresses, not names
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return host, port


@dataclass(frozen=True, slots=True)
class DomainLookupSettings:
    """Where proofs are looked up. The defaults are the system's resolver and CAs."""

    dns_server: str | None = None
    """``HOST[:PORT]`` of the DNS server to ask (an address); None: the system's resolver."""
    ca_file: str | None = None
    """A PEM file of CAs an HTTPS proof's certificate must chain to; None: the system's trust store."""
    timeout: float = 5.0
    """Seconds for each look-up."""
    https_port: int = 443
    """Where the HTTPS proof is fetched; only a test server is anywhere but 443."""

    def __post_init__(self) -> None:
        if self.dns_server is not None:
            parse_dns_server(self.dns_server)  # a bad address fails here, not at the first look-up


class _Resolver(AbstractResolver):
    """aiohttp host resolution through the configured DNS server, so the HTTPS proof's host is found where the
    TXT proof is."""

    def __init__(self, resolver: dns.asyncresolver.Resolver, timeout: float) -> None:
        self._resolver = resolver
        self._timeout = timeout

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found: list[ResolveResult] = []
        for rdtype, kind in (("A", socket.AF_INET), ("AAAA", socket.AF_INET6)):
            if family not in (socket.AF_UNSPEC, kind):
                continue
            try:
                answer = await self._resolver.resolve(host, rdtype, lifetime=self._timeout, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException as exc:
                raise OSError(f"cannot resolve {host}: {exc}") from exc
            found.extend(ResolveResult(hostname=host, host=rdata.address, port=port, family=kind, proto=0,
                                       flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV) for rdata in answer)
        if not found:
            raise OSError(f"{host} has no address")
        return found

    async def close(self) -> None:
        return None


class DomainResolver:
    """DNS TXT and HTTPS look-ups for domain proofs; close it (``await close()``) when done."""

    def __init__(self, settings: DomainLookupSettings | None = None) -> None:
        self.settings = settings or DomainLookupSettings()
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._session: aiohttp.ClientSession | None = None

    def _dns(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            if self.settings.dns_server is None:
                try:
                    self._resolver = dns.asyncresolver.Resolver()
                except dns.exception.DNSException as exc:
                    raise LookupFailed(f"no system resolver: {exc}") from exc
            else:
                host, port = parse_dns_server(self.settings.dns_server)
                self._resolver = dns.asyncresolver.Resolver(configure=False)
                self._resolver.nameservers = [host]
                self._resolver.port = port
            self._resolver.lifetime = self.settings.timeout
        return self._resolver

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            context = ssl.create_default_context(cafile=self.settings.ca_file)
            resolver = _Resolver(self._dns(), self.settings.timeout) if self.settings.dns_server else None
            connector = aiohttp.TCPConnector(ssl=context, resolver=resolver, limit_per_host=4)
            self._session = aiohttp.ClientSession(connector=connector,
                                                  timeout=aiohttp.ClientTimeout(total=self.settings.timeout))
        return self._session

    async def txt(self, name: str) -> list[str]:
        try:
            answer = await self._dns().resolve(name, "TXT", lifetime=self.settings.timeout, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException as exc:
            raise LookupFailed(type(exc).__name__ + (f": {exc}" if str(exc) else "")) from exc
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]

    async def well_known(self, domain: str) -> bytes | None:
        url = well_known_url(domain, self.settings.https_port)
        try:
            async with self._http().get(url, allow_redirects=False) as response:
                if response.status in (404, 410):
                    return None
                if response.status != 200:
                    raise LookupFailed(f"HTTP {response.status}")
                body = bytearray()
                async for chunk in response.content.iter_chunked(16 * 1024):
                    body += chunk
                    if len(body) > MAX_WELL_KNOWN_BYTES:
                        raise LookupFailed(f"the document is larger than {MAX_WELL_KNOWN_BYTES} bytes")
                return bytes(body)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise LookupFailed(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
