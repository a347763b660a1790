"""Fixtures shared by the whole suite: real and fake DNS servers on loopback."""

from __future__ import annotations

import ipaddress
import itertools
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from outlast import Resolver, _root
from outlast.testing._dnsserver import DNSServer
from servers.bind import ZONE, BindNotInstalled, BindServer

_counter = itertools.count()


def _loopback(host: object) -> bool:
    if host in (None, "", b"", "localhost", b"localhost"):
        return True
    text = host.decode() if isinstance(host, bytes) else str(host)
    try:
        return ipaddress.ip_address(text.strip("[]").partition("%")[0]).is_loopback
    except ValueError:
        return False


def _stay_on_loopback(event: str, args: tuple[object, ...]) -> None:
    """Fail any test that would resolve or reach something beyond loopback."""
    if event == "socket.getaddrinfo" and not _loopback(args[0]):
        raise RuntimeError(f"a test asked the system resolver for {args[0]!r}: stay on loopback")
    if event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple):
        sock = args[0]
        if event == "socket.connect" and getattr(sock, "type", None) == socket.SOCK_DGRAM:
            return  # connecting a UDP socket sends nothing (used to find the route)
        if not _loopback(args[1][0]):
            raise RuntimeError(f"a test tried to reach {args[1]!r}: stay on loopback")


sys.addaudithook(_stay_on_loopback)


@pytest.fixture(autouse=True)
def _fresh_shared_components() -> Iterator[None]:
    """Each test starts with no shared resolver or policy (no breaker state from another)."""
    yield
    _root.forget_shared()


@pytest.fixture
def bind(request: pytest.FixtureRequest) -> Iterator[BindServer]:
    """A started BIND 9 serving `outlast.test.` (DoT and DoH included); about 35 ms.

    Fails, never skips, when BIND is not installed. Tests using it must carry
    ``@pytest.mark.bind``.
    """
    if request.node.get_closest_marker("bind") is None:
        pytest.fail("tests that use the `bind` fixture must be marked @pytest.mark.bind")
    try:
        server = BindServer().start()
    except BindNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A test certificate authority (trustme), one per test module."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    """The test CA's certificate as a PEM file in the test's own directory."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def resolver_for(fault_dns: DNSServer) -> Iterator[Callable[..., Resolver]]:
    """Make resolvers asking only `fault_dns`; all are closed after the test."""
    made: list[Resolver] = []

    def make(**options: Any) -> Resolver:
        options.setdefault("timeout", 0.5)
        resolver = Resolver(providers=[fault_dns.provider], **options)
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        resolver.close()


@pytest.fixture
def fault_dns() -> Iterator[DNSServer]:
    """A started `DNSServer` (the dnspython fault server), closed after the test."""
    with DNSServer() as server:
        yield server


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Make names no other test uses: ``unique_name("api")`` -> ``api-1-3f2a9c.outlast.test``.

    The names live in BIND's zone, so they suit both `bind` and `fault_dns`.
    """
    token = uuid.uuid4().hex[:6]

    def make(prefix: str = "host") -> str:
        return f"{prefix}-{next(_counter)}-{token}.{ZONE.rstrip('.')}"

    return make
