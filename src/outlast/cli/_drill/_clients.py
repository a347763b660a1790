"""The drill's clients: what users have without outlast, and an outlast client.

The clients without outlast are plain httpx whose names are looked up by dnspython's
stub resolver at the drill's DNS servers (the machine's own resolver knows nothing of
the drill's names): with no cache, as most processes run, or with dnspython's
TTL-honouring ``LRUCache``. Connections try the answer's addresses in order, as
``socket.create_connection`` does. One of them retries naively (three attempts, no
backoff), as hand-written retry loops do.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import dns.exception
import dns.resolver
import httpcore
import httpx

from outlast.cli._drill._service import CLIENT_HEADER
from outlast.dns import Resolver
from outlast.http import Transport, classify_error, classify_result
from outlast.policy import Policy

__all__ = ["DrillClient", "OutlastClient", "PlainClient", "Result"]

TIMEOUT = 5.0  # httpx's own default
#: A request counts as available when a good answer came back within this many seconds.
SLO = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """One request: did it get a good answer, how long it took, which address served it."""

    at: float
    ok: bool
    latency: float
    served_by: str | None


class _DnspythonBackend(httpcore.NetworkBackend):
    """Resolves with dnspython at the given servers; tries the addresses in order."""

    def __init__(
        self, servers: Iterable[tuple[str, int]], *, cache: bool, ipv6: bool = False
    ) -> None:
        resolver = dns.resolver.Resolver(configure=False)
        servers = list(servers)
        resolver.nameservers = [address for address, _ in servers]
        resolver.nameserver_ports = dict(servers)
        if cache:
            resolver.cache = dns.resolver.LRUCache()
        self._resolver = resolver
        # AAAA before A, as getaddrinfo orders them when IPv6 is configured (RFC 6724).
        self._types = ("AAAA", "A") if ipv6 else ("A",)
        self._tcp = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses: list[str] = []
        for rdtype in self._types:
            try:
                addresses += [rdata.address for rdata in self._resolver.resolve(host, rdtype)]
            except dns.resolver.NoAnswer:
                continue  # no record of this type: the other may have one
            except dns.exception.DNSException as exc:
                raise httpcore.ConnectError(f"{host}: {exc}") from exc
        error: Exception = httpcore.ConnectError(f"{host}: no address")
        for address in addresses:
            try:
                return self._tcp.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("the drill uses no unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class DrillClient:
    """Sends GETs with an identifying header.

    A 5xx, an error, or an answer slower than :data:`SLO` is a failure.
    """

    name: str
    attempts: int = 1
    #: Counts the requests reaching the backend per client; None: the drill's HTTP service.
    backend: Counter[str] | None = None

    def __init__(self, name: str, transport: httpx.BaseTransport) -> None:
        self.name = name
        self._client = httpx.Client(
            transport=transport, timeout=TIMEOUT, headers={CLIENT_HEADER: name}
        )

    def get(self, url: str) -> Result:
        started = time.monotonic()
        ok, served_by = False, None
        for _ in range(self.attempts):
            try:
                response = self._client.get(url)
            except httpx.HTTPError:
                continue
            if response.status_code < 500:
                ok, served_by = True, response.text
                break
        latency = time.monotonic() - started
        return Result(started, ok and latency <= SLO, latency, served_by)

    def close(self) -> None:
        self._client.close()


class PlainClient(DrillClient):
    """httpx with dnspython's stub resolver (with or without its TTL cache)."""

    def __init__(
        self,
        name: str,
        servers: Iterable[tuple[str, int]],
        *,
        cache: bool,
        attempts: int = 1,
        ipv6: bool = False,
    ) -> None:
        transport = httpx.HTTPTransport()
        transport._pool = httpcore.ConnectionPool(  # the drill's own stand-in for the OS
            network_backend=_DnspythonBackend(servers, cache=cache, ipv6=ipv6)
        )
        super().__init__(name, transport)
        self.attempts = attempts


class OutlastClient(DrillClient):
    """httpx with ``outlast.Transport``, every setting at its default but the providers."""

    def __init__(self, name: str, providers: list[str]) -> None:
        self._resolver = Resolver(providers=providers)
        policy = Policy.from_env({}, classify_error=classify_error, classify_result=classify_result)
        super().__init__(name, Transport(resolver=self._resolver, policy=policy))

    def close(self) -> None:
        super().close()
        self._resolver.close()
