"""Do53 providers and reading DNS responses: what needs dnspython.

:class:`NameserverProvider` asks a DNS server over UDP (TCP again when the answer is
truncated) or TCP with dnspython's nameserver classes; :func:`interpret` turns a response
into an :data:`~outlast.dns._providers.Outcome` for one record type; :func:`bounded`
gives one query its own deadline. DoT (``_dot``) and DoH (``_doh``) read their responses
here too. Imported only when such a provider is built (``_pool.build_provider``), so a
resolver on the default ``system`` provider never loads dnspython.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import dns.asyncbackend
import dns.exception
import dns.message
import dns.nameserver
import dns.rcode
import dns.rdatatype

from outlast._config import ProviderSpec
from outlast.dns._providers import (
    FAMILIES,
    Failure,
    Negative,
    Outcome,
    Positive,
    combine,
    describe,
)

__all__ = ["NameserverProvider", "bounded", "interpret"]


class NameserverProvider:
    """A DNS server spoken to with dnspython: ``udp`` or ``tcp``.

    UDP answers that come back truncated are asked again over TCP.
    """

    def __init__(self, spec: ProviderSpec) -> None:
        self.spec = spec
        self.name = spec.text
        self._tcp_only = spec.kind == "tcp"
        self._backend = dns.asyncbackend.get_backend("asyncio")
        self._nameserver: dns.nameserver.Nameserver
        if spec.kind in ("udp", "tcp"):
            assert spec.address is not None
            assert spec.port is not None
            self._nameserver = dns.nameserver.Do53Nameserver(spec.address, spec.port)
        else:
            raise ValueError(f"not a nameserver provider: {spec.text!r}")

    def __repr__(self) -> str:
        return f"<NameserverProvider {self.name}>"

    async def lookup(self, host: str, timeout: float) -> Outcome:
        # Each query has its own deadline, so one that is dropped cannot discard the
        # other's answer: what arrived is combined.
        outcomes = await asyncio.gather(
            bounded(self._query, host, dns.rdatatype.A, timeout, self.name),
            bounded(self._query, host, dns.rdatatype.AAAA, timeout, self.name),
        )
        return combine(dict(zip(FAMILIES, outcomes, strict=True)), self.name)

    async def _query(self, host: str, rdtype: dns.rdatatype.RdataType, timeout: float) -> Outcome:
        request = dns.message.make_query(host, rdtype, use_edns=0, payload=1232)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            try:
                response = await self._nameserver.async_query(
                    request, timeout, None, 0, self._tcp_only, self._backend
                )
            except dns.message.Truncated:
                remaining = max(deadline - loop.time(), 0.001)
                response = await self._nameserver.async_query(
                    request, remaining, None, 0, True, self._backend
                )
        except dns.exception.Timeout:
            return Failure(f"timed out after {timeout:g}s", self.name)
        except Exception as exc:  # socket, TLS, dnspython and (DoH) httpx errors alike
            return Failure(describe(exc), self.name)
        if not isinstance(response, dns.message.QueryMessage):
            return Failure("the response is not a query response", self.name)
        return interpret(response, rdtype, self.name)


def interpret(response: dns.message.QueryMessage, rdtype: int, source: str) -> Outcome:
    """The outcome a DNS response carries for one record type."""
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return Failure(dns.rcode.to_text(rcode), source)
    try:
        chain = response.resolve_chaining()
    except dns.exception.DNSException as exc:
        return Failure(describe(exc), source)
    if rcode == dns.rcode.NXDOMAIN:
        return Negative("NXDOMAIN", float(chain.minimum_ttl), source)
    if chain.answer is None or len(chain.answer) == 0:
        return Negative("NODATA", float(chain.minimum_ttl), source)
    addresses = tuple(rdata.address for rdata in chain.answer if rdata.rdtype == rdtype)
    if not addresses:
        return Negative("NODATA", float(chain.minimum_ttl), source)
    return Positive(addresses, float(chain.minimum_ttl), source)


async def bounded(
    query: Callable[[str, dns.rdatatype.RdataType, float], Awaitable[Outcome]],
    host: str,
    rdtype: dns.rdatatype.RdataType,
    timeout: float,
    source: str,
) -> Outcome:
    """``query(host, rdtype, timeout)``, or a :class:`Failure` once ``timeout`` has passed."""
    try:
        return await asyncio.wait_for(query(host, rdtype, timeout), timeout)
    except asyncio.TimeoutError:
        return Failure(f"timed out after {timeout:g}s", source)
