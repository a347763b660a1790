"""DNS over HTTPS (RFC 8484) with httpx.

dnspython's own DoH support needs a different HTTP library (``httpx2``), so outlast
speaks DoH itself over httpx: a POST of the wire-format query, ``application/dns-message``
both ways, HTTP/2 when ``h2`` is installed (some servers, BIND among them, speak only
HTTP/2). The client lives on the resolver's event loop and is closed with it. The
URL's host, if it is a name, is resolved by the operating system.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import ssl

import dns.message
import dns.rdatatype
import httpx

from outlast._config import ProviderSpec
from outlast.dns._dot import ssl_context
from outlast.dns._providers import FAMILIES, Failure, Outcome, combine, describe
from outlast.dns._wire import bounded, interpret

__all__ = ["DoHProvider"]

_MEDIA_TYPE = "application/dns-message"
_HTTP2 = importlib.util.find_spec("h2") is not None


class DoHProvider:
    """An ``https://HOST/PATH`` provider."""

    def __init__(self, spec: ProviderSpec, *, verify: bool | str | os.PathLike[str] = True) -> None:
        assert spec.url is not None
        self.spec = spec
        self.name = spec.text
        self._url = spec.url
        # The same trust as DoT (the system store by default), not httpx's certifi bundle.
        self._verify: ssl.SSLContext = ssl_context(verify, alpn=None)
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"<DoHProvider {self.name}>"

    def _session(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                http2=_HTTP2, verify=self._verify, trust_env=False, follow_redirects=False
            )
        return self._client

    async def lookup(self, host: str, timeout: float) -> Outcome:
        # httpx's timeout bounds each phase, not the request: bound each query whole,
        # so one that hangs cannot discard the other's answer.
        outcomes = await asyncio.gather(
            bounded(self._query, host, dns.rdatatype.A, timeout, self.name),
            bounded(self._query, host, dns.rdatatype.AAAA, timeout, self.name),
        )
        return combine(dict(zip(FAMILIES, outcomes, strict=True)), self.name)

    async def _query(self, host: str, rdtype: dns.rdatatype.RdataType, timeout: float) -> Outcome:
        request = dns.message.make_query(host, rdtype, use_edns=0, payload=1232)
        request.id = 0  # RFC 8484 section 4.1: cache friendly
        try:
            response = await self._session().post(
                self._url,
                content=request.to_wire(),
                headers={"content-type": _MEDIA_TYPE, "accept": _MEDIA_TYPE},
                timeout=timeout,
            )
        except httpx.TimeoutException:
            return Failure(f"timed out after {timeout:g}s", self.name)
        except httpx.HTTPError as exc:
            return Failure(describe(exc), self.name)
        if response.status_code != 200:
            return Failure(f"HTTP {response.status_code}", self.name)
        try:
            message = dns.message.from_wire(response.content)
        except Exception as exc:  # dnspython raises many kinds for a malformed message
            return Failure(f"malformed DoH response: {describe(exc)}", self.name)
        if not isinstance(message, dns.message.QueryMessage) or not request.is_response(message):
            return Failure("the DoH response does not answer the query", self.name)
        return interpret(message, rdtype, self.name)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def forget(self) -> None:
        """After a fork: the client belongs to the parent's loop."""
        self._client = None
