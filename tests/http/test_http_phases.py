"""Failover sees every phase of a fresh connection, not just the TCP connect.

The matrix (each cell a name whose first address has the fault and whose second is a
healthy server on the same port, through ``outlast.Client(timeout=1.0)`` /
``outlast.AsyncClient(timeout=1.0)``):

| phase      | fault             | HTTP                          | HTTPS                       |
|------------|-------------------|-------------------------------|-----------------------------|
| connect    | drop SYN          | raced: next after 250 ms      | raced: next after 250 ms    |
| connect    | refuse            | next at once                  | next at once                |
| TLS        | hang after accept | (no TLS: see first byte)      | raced: next after 250 ms    |
| TLS        | reset             | (no TLS: see first byte)      | next at once                |
| TLS        | wrong certificate | n/a                           | the call fails, no failover |
| write      | hang (body stalls)| write timeout; eject          | (fails in TLS above)        |
| first byte | hang after accept | read timeout; eject; retry    | (fails in TLS above)        |
| first byte | reset             | read error; eject; retry      | (fails in TLS above)        |
| first byte | close, no answer  | disconnected; eject; retry    | n/a                         |

"eject; retry": the request was sent, so only the policy may retry it (a GET here);
the retry dials the healthy address because the faulty one is ejected. The stalled
write is a POST (not retried): the next call dials the healthy address at once.

Invariants, checked in every cell, sync and async:
- a healthy address of the name is reached within the caller's timeout whenever one
  exists (connect and TLS faults: within the connect timeout, one attempt; faults after
  the request was sent: the faulty address is ejected and the policy's retry reaches
  the healthy one within connect + read);
- an address is restored only after it served a response (no ``AddressRestored`` for a
  faulty address, whatever its TCP did);
- a wrong certificate is never failed over into success.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import trustme
from faults import hung_address, name_listing_first, resetting_address
from loopback_http import DROP, Backend, client_context, silent_address

import outlast
from outlast import Event, Resolver
from outlast._dial import LOGGER, Outliers, Report, race
from outlast._events import Emitter
from outlast.http import AddressEjected, AddressFailed, AddressRestored
from outlast.testing import DNSServer

FAULT_ADDRESS = {
    "drop_syn": "127.0.0.3",
    "refuse": "127.0.0.2",
    "hang": "127.0.0.6",
    "reset": "127.0.0.7",
    "wrong_cert": "127.0.0.8",
    "no_response": "127.0.0.9",
}
#: Faults a racing dial gets past inside one attempt, and the most the first call may take.
CONNECT_PHASE = {"drop_syn": 1.0, "refuse": 0.5}
TLS_PHASE = {"hang": 1.0, "reset": 0.5}


@contextlib.contextmanager
def _faulty(kind: str, ca: trustme.CA, name: str, scheme: str) -> Iterator[tuple[int, Backend]]:
    """The faulty address's port and the healthy server on 127.0.0.1 at the same port."""
    address = FAULT_ADDRESS[kind]
    cert = ca.issue_cert(name) if scheme == "https" else None
    with contextlib.ExitStack() as stack:
        if kind == "drop_syn":
            port = stack.enter_context(silent_address(address))
        elif kind == "hang":
            port = stack.enter_context(hung_address(address))
        elif kind == "reset":
            port = stack.enter_context(resetting_address(address))
        elif kind == "wrong_cert":
            impostor = Backend(cert=ca.issue_cert("someone-else.outlast.test"), address=address)
            port = stack.enter_context(impostor).port
        elif kind == "no_response":
            dropper = stack.enter_context(Backend(address=address))
            dropper.status = DROP  # type: ignore[assignment]
            port = dropper.port
        else:  # refuse: nothing listens on the address at the healthy server's port
            healthy = stack.enter_context(Backend(cert=cert))
            yield healthy.port, healthy
            return
        healthy = stack.enter_context(Backend(cert=cert, port=port))
        yield port, healthy


def _count(events: list[Event], kind: type[Event], address: str) -> int:
    return sum(1 for e in events if isinstance(e, kind) and getattr(e, "address", "") == address)


Outcome = tuple[int | BaseException, float]


def _calls(face: str, options: dict[str, Any], url: str, n: int) -> list[Outcome]:
    """``n`` GETs of ``url`` through one outlast client of ``face``: (status or error, seconds)."""
    if face == "sync":
        out: list[Outcome] = []
        with outlast.Client(**options) as client:
            for _ in range(n):
                start = time.monotonic()
                try:
                    out.append((client.get(url).status_code, time.monotonic() - start))
                except httpx.HTTPError as exc:
                    out.append((exc, time.monotonic() - start))
        return out

    async def main() -> list[Outcome]:
        out: list[Outcome] = []
        async with outlast.AsyncClient(**options) as client:
            for _ in range(n):
                start = time.monotonic()
                try:
                    response = await client.get(url)
                    out.append((response.status_code, time.monotonic() - start))
                except httpx.HTTPError as exc:
                    out.append((exc, time.monotonic() - start))
        return out

    return asyncio.run(main())


def _setup(
    kind: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
) -> tuple[Resolver, str]:
    resolver = resolver_for()
    name = name_listing_first(fault_dns, resolver, unique_name, [FAULT_ADDRESS[kind], "127.0.0.1"])
    return resolver, name


@pytest.mark.parametrize("face", ["sync", "async"])
@pytest.mark.parametrize(
    ("kind", "scheme"),
    [(kind, scheme) for kind in CONNECT_PHASE for scheme in ("http", "https")]
    + [(kind, "https") for kind in TLS_PHASE],  # plain HTTP has no TLS: see the next test
)
def test_a_fault_before_the_first_byte_fails_over_within_the_timeout(
    kind: str,
    scheme: str,
    face: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    resolver, name = _setup(kind, fault_dns, unique_name, resolver_for)
    events: list[Event] = []
    options = {
        "timeout": 1.0,
        "verify": client_context(ca),
        "resolver": resolver,
        "listeners": [events.append],
    }
    with _faulty(kind, ca, name, scheme) as (port, healthy):
        outcomes = _calls(face, options, f"{scheme}://{name}:{port}/", 3)
    statuses = [status for status, _ in outcomes]
    assert statuses == [200, 200, 200], outcomes
    bound = {**CONNECT_PHASE, **TLS_PHASE}[kind]
    assert outcomes[0][1] < bound  # one attempt: the dial itself went on to the healthy one
    assert healthy.hits == 3
    fault = FAULT_ADDRESS[kind]
    assert _count(events, AddressEjected, fault) == 1
    assert _count(events, AddressRestored, fault) == 0


@pytest.mark.parametrize("face", ["sync", "async"])
@pytest.mark.parametrize("kind", ["hang", "reset", "no_response"])
def test_a_fault_after_the_request_was_sent_ejects_and_the_retry_fails_over(
    kind: str,
    face: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    # Plain HTTP: TCP to the faulty address succeeds and the request is written; what
    # fails is the wait for the first byte (a read timeout, a reset, a close). That
    # counts against the address; the policy's retry of the GET dials the healthy one.
    resolver, name = _setup(kind, fault_dns, unique_name, resolver_for)
    events: list[Event] = []
    options = {"timeout": 1.0, "resolver": resolver, "listeners": [events.append]}
    with _faulty(kind, ca, name, "http") as (port, healthy):
        outcomes = _calls(face, options, f"http://{name}:{port}/", 3)
    assert [status for status, _ in outcomes] == [200, 200, 200], outcomes
    first_bound = 2.0 if kind == "hang" else 0.5  # hang: the 1 s read timeout, then the retry
    assert outcomes[0][1] < first_bound
    assert max(took for _, took in outcomes[1:]) < 0.3  # ejected: never waited for again
    assert healthy.hits == 3
    fault = FAULT_ADDRESS[kind]
    assert _count(events, AddressEjected, fault) == 1
    assert _count(events, AddressRestored, fault) == 0


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_wrong_certificate_is_never_failed_over_into_success(
    face: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    resolver, name = _setup("wrong_cert", fault_dns, unique_name, resolver_for)
    events: list[Event] = []
    options = {
        "timeout": 1.0,
        "verify": client_context(ca),
        "resolver": resolver,
        "listeners": [events.append],
    }
    with _faulty("wrong_cert", ca, name, "https") as (port, healthy):
        outcomes = _calls(face, options, f"https://{name}:{port}/", 2)
    for error, _ in outcomes:
        assert isinstance(error, httpx.ConnectError)
        assert _certificate_failure(error)
    assert healthy.hits == 0
    assert healthy.connections == 0  # the dial stopped at the certificate, it did not race on
    fault = FAULT_ADDRESS["wrong_cert"]
    assert _count(events, AddressFailed, fault) == 2  # reported, every time
    assert _count(events, AddressEjected, fault) == 0  # and not routed around


def _certificate_failure(exc: BaseException) -> bool:
    current: BaseException | None = exc
    for _ in range(20):
        if current is None:
            return False
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        current = current.__cause__ or current.__context__
    return False


def test_a_tcp_connect_does_not_restore_an_ejected_address_a_response_does(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    events: list[Event] = []
    outliers = Outliers(eject_for=30)
    report = Report(Emitter(LOGGER, [events.append]), "h.test", outliers)
    with hung_address("127.0.0.6") as port:
        outliers.failed("127.0.0.6", port)
        dialled = race(["127.0.0.6"], port, 1.0, report)  # the kernel accepts for it
        dialled.sock.close()
        assert outliers.split(["127.0.0.6"], port) == ([], ["127.0.0.6"])  # still ejected
    name = unique_name("restore")
    fault_dns.set(name, ["127.0.0.1"])
    with Backend() as server:
        transport = outlast.Transport(resolver=resolver_for(), listeners=[events.append])
        ejected = transport._parts.outliers
        assert ejected is not None
        ejected.failed("127.0.0.1", server.port)
        with httpx.Client(transport=transport) as client:
            assert client.get(f"http://{name}:{server.port}/").status_code == 200
        assert ejected.split(["127.0.0.1"], server.port) == (["127.0.0.1"], [])
    assert _count(events, AddressRestored, "127.0.0.6") == 0
    assert _count(events, AddressRestored, "127.0.0.1") == 1  # it served: back in its place


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_request_write_that_stalls_ejects_the_address(
    face: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    # The write phase on real sockets: a hung process never reads, so a large body fills
    # the kernel's buffers and the write times out. The POST is not retried (not safe),
    # but the address is ejected: the next call goes to the healthy one at once.
    resolver, name = _setup("hang", fault_dns, unique_name, resolver_for)
    events: list[Event] = []
    body = b"x" * (64 * 1024 * 1024)
    timeout = httpx.Timeout(2.0, write=0.3)
    policy = outlast.Policy(retry=outlast.Retry(attempts=1), breaker=None)
    options = {"timeout": timeout, "resolver": resolver, "policy": policy}
    options["listeners"] = [events.append]
    with _faulty("hang", ca, name, "http") as (port, healthy):
        url = f"http://{name}:{port}/"
        if face == "sync":
            with outlast.Client(**options) as client:  # type: ignore[arg-type]
                with pytest.raises(httpx.WriteTimeout):
                    client.post(url, content=body)
                start = time.monotonic()
                status = client.get(url).status_code
        else:

            async def main() -> tuple[int, float]:
                async with outlast.AsyncClient(**options) as client:  # type: ignore[arg-type]
                    with pytest.raises(httpx.WriteTimeout):
                        await client.post(url, content=body)
                    began = time.monotonic()
                    return (await client.get(url)).status_code, began

            status, start = asyncio.run(main())
        took = time.monotonic() - start
    assert status == 200
    assert took < 0.3
    assert healthy.hits == 1
    assert _count(events, AddressEjected, FAULT_ADDRESS["hang"]) == 1
