"""What counts against an address, phase by phase, and the race's invariants.

The watched stream over a scripted inner stream (no socket needed): a failure before
the first response byte ejects, the first byte restores, nothing after it counts, and
cancellation never counts. Then `outlast._dial.race` over real loopback sockets with
hypothesis choosing each address's fault: whenever a healthy address exists, the race
reaches one within the timeout; faulty addresses are never restored.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Iterator

import anyio
import httpcore
import pytest
import trustme
from faults import hung_address, resetting_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loopback_http import Backend, client_context

from outlast._dial import TLS, AllAddressesFailed, Outliers, Report, race
from outlast._events import Emitter, Event
from outlast._exceptions import ResolveError
from outlast.dns import Answer
from outlast.http import AddressEjected, AddressRestored
from outlast.http._streams import AsyncWatchedStream, Tenure, Watch, WatchedStream


class Scripted(httpcore.NetworkStream):
    """A stream whose reads and writes are scripted: bytes to return, or an error."""

    def __init__(self, *steps: bytes | Exception) -> None:
        self.steps = list(steps)

    def _next(self) -> bytes:
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._next()

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._next()


def _watched(*steps: bytes | Exception) -> tuple[WatchedStream, Outliers, list[Event]]:
    events: list[Event] = []
    outliers = Outliers(eject_for=30)
    report = Report(Emitter(logging.getLogger("test"), [events.append]), "h.test", outliers)
    return WatchedStream(Scripted(*steps), Watch(report, "10.0.0.1", 443), False), outliers, events


def _ejected(outliers: Outliers) -> bool:
    return outliers.split(["10.0.0.1"], 443)[1] == ["10.0.0.1"]


@pytest.mark.parametrize(
    ("phase", "steps"),
    [
        ("write fails", (httpcore.WriteError("reset"),)),
        ("write times out", (httpcore.WriteTimeout("full"),)),
        ("read times out", (b"", httpcore.ReadTimeout("nothing"))),
        ("read reset", (b"", httpcore.ReadError("reset"))),
        ("closed, no response", (b"", b"")),
    ],
)
def test_a_failure_before_the_first_byte_ejects(phase: str, steps: tuple[object, ...]) -> None:
    stream, outliers, events = _watched(*steps)  # type: ignore[arg-type]
    with contextlib.suppress(httpcore.NetworkError, httpcore.TimeoutException):
        stream.write(b"GET / HTTP/1.1\r\n\r\n")
        stream.read(100)
    assert _ejected(outliers), phase
    assert sum(isinstance(e, AddressEjected) for e in events) == 1


def test_the_first_byte_restores_and_nothing_after_it_counts() -> None:
    stream, outliers, events = _watched(b"", b"H", httpcore.ReadError("later"))
    outliers.failed("10.0.0.1", 443)
    stream.write(b"GET / HTTP/1.1\r\n\r\n")
    assert stream.read(100) == b"H"
    assert not _ejected(outliers)
    assert sum(isinstance(e, AddressRestored) for e in events) == 1
    with pytest.raises(httpcore.ReadError):
        stream.read(100)
    assert not _ejected(outliers)  # a failure on a connection that served is not the address's


def test_cancellation_is_not_the_addresses_failure() -> None:
    class Never(httpcore.AsyncNetworkStream):
        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
            await anyio.sleep(10)
            return b""

    outliers = Outliers(eject_for=30)
    report = Report(Emitter(logging.getLogger("test"), []), "h.test", outliers)
    stream = AsyncWatchedStream(Never(), Watch(report, "10.0.0.1", 443), False)

    async def main() -> None:
        with anyio.move_on_after(0.05):
            await stream.read(100)

    anyio.run(main)
    assert not _ejected(outliers)


# -- the race over real sockets ------------------------------------------------------

KINDS = ("healthy", "refuse", "drop_syn", "hang")


@contextlib.contextmanager
def _listening(kinds: list[str], ca: trustme.CA | None = None) -> Iterator[tuple[list[str], int]]:
    """Loopback addresses 127.0.1.N, one per kind, all at one port (TLS servers with ``ca``)."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.1.1", 0))
            port: int = probe.getsockname()[1]
        addresses = [f"127.0.1.{i + 1}" for i in range(len(kinds))]
        try:
            with contextlib.ExitStack() as stack:
                for address, kind in zip(addresses, kinds, strict=True):
                    if kind == "healthy" and ca is not None:
                        cert = ca.issue_cert("h.test")
                        stack.enter_context(Backend(cert=cert, address=address, port=port))
                    elif kind == "wrong_cert" and ca is not None:
                        cert = ca.issue_cert("other.test")
                        stack.enter_context(Backend(cert=cert, address=address, port=port))
                    elif kind == "healthy":
                        server = socket.create_server((address, port))
                        stack.callback(server.close)
                    elif kind == "drop_syn":
                        stack.enter_context(_silent_at(address, port))
                    elif kind == "hang":
                        stack.enter_context(hung_address(address, port))
                    elif kind == "reset":
                        stack.enter_context(resetting_address(address, port))
                yield addresses, port
                return
        except OSError:  # the port was taken on one of the addresses: pick another
            continue
    raise AssertionError("no port free on every address")


@contextlib.contextmanager
def _silent_at(address: str, port: int) -> Iterator[None]:
    """``address``:``port`` drops SYNs: a backlog of 0 whose accept queue is full (Linux)."""
    server = socket.socket()
    fillers: list[socket.socket] = []
    try:
        server.bind((address, port))
        server.listen(0)
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((address, port))
            fillers.append(filler)
        yield
    finally:
        for filler in fillers:
            filler.close()
        server.close()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3))
def test_the_race_reaches_a_healthy_address_whenever_one_exists(kinds: list[str]) -> None:
    events: list[Event] = []
    outliers = Outliers(eject_for=30)
    report = Report(Emitter(logging.getLogger("test"), [events.append]), "h.test", outliers)
    timeout = 2.0
    with _listening(kinds) as (addresses, port):
        start = time.monotonic()
        try:
            dialled = race(addresses, port, timeout, report)
        except AllAddressesFailed:
            dialled = None
        took = time.monotonic() - start
    healthy = {a for a, k in zip(addresses, kinds, strict=True) if k in ("healthy", "hang")}
    # TCP only: a hung process accepts, so it counts as connectable here (TLS and the
    # first byte judge it: see test_http_phases.py).
    if healthy:
        assert dialled is not None
        assert dialled.address in healthy
        dialled.sock.close()
        # Each faulty address before it cost at most the 250 ms stagger.
        assert took < 0.25 * addresses.index(dialled.address) + 0.5
    else:
        assert dialled is None
        assert took < timeout + 0.5
    assert not any(isinstance(e, AddressRestored) for e in events)


TLS_KINDS = ("healthy", "refuse", "drop_syn", "hang", "wrong_cert")
_CA = trustme.CA()


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.sampled_from(TLS_KINDS), min_size=1, max_size=3))
def test_with_tls_the_first_address_to_finish_its_handshake_decides(kinds: list[str]) -> None:
    # Refused addresses fail at once; silent and hung ones never finish (the next starts
    # after 250 ms). So the first healthy or wrong-certificate address in order decides:
    # healthy -> connected to it; wrong certificate -> the dial fails with it, even when
    # a healthy address comes later (a wrong certificate is never failed over).
    events: list[Event] = []
    outliers = Outliers(eject_for=30)
    report = Report(Emitter(logging.getLogger("test"), [events.append]), "h.test", outliers)
    tls = TLS(client_context(_CA), "h.test")
    decisive = next((k for k in kinds if k in ("healthy", "wrong_cert")), None)
    with _listening(kinds, _CA) as (addresses, port):
        start = time.monotonic()
        if decisive == "wrong_cert":
            with pytest.raises(ssl.SSLCertVerificationError):
                race(addresses, port, 2.0, report, tls=tls)
        elif decisive == "healthy":
            dialled = race(addresses, port, 2.0, report, tls=tls)
            assert kinds[addresses.index(dialled.address)] == "healthy"
            assert dialled.address == addresses[kinds.index("healthy")]
            assert isinstance(dialled.sock, ssl.SSLSocket)
            dialled.sock.close()
        else:
            with pytest.raises(AllAddressesFailed):
                race(addresses, port, 2.0, report, tls=tls)
        took = time.monotonic() - start
    if decisive is not None:
        assert took < 0.25 * kinds.index(decisive) + 0.5
    assert not any(isinstance(e, AddressRestored) for e in events)
    wrong = {a for a, k in zip(addresses, kinds, strict=True) if k == "wrong_cert"}
    assert not any(isinstance(e, AddressEjected) and e.address in wrong for e in events)


def test_a_failed_attempt_starts_the_next_at_once_even_while_another_is_silent() -> None:
    # RFC 8305 section 5: the next attempt starts when the delay elapses *or* the
    # previous attempt fails. silent (t=0), refused (t=0.25, fails), healthy (t=0.25).
    outliers = Outliers(eject_for=30)
    report = Report(Emitter(logging.getLogger("test"), []), "h.test", outliers)
    with _listening(["drop_syn", "refuse", "healthy"]) as (addresses, port):
        start = time.monotonic()
        dialled = race(addresses, port, 2.0, report)
        took = time.monotonic() - start
        dialled.sock.close()
    assert dialled.address == addresses[2]
    assert took < 0.45  # not 0.5: the refusal did not wait out a second stagger


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class _Held:
    """What a resolver holds for a name: an answer, a pending lookup, or an error."""

    def __init__(self) -> None:
        self.step: object = None
        self.reads = 0

    def _plan(self, host: str) -> object:
        self.reads += 1
        if isinstance(self.step, Exception):
            raise self.step
        return self.step


def _answer(*addresses: str, ttl: float = 10.0, stale: bool = False) -> Answer:
    return Answer("h.test", addresses, stale=stale, source="test", ttl=ttl)


def test_tenure_reads_the_name_only_after_the_answer_expired() -> None:
    clock, held = _Clock(), _Held()
    tenure = Tenure(held, _answer("10.0.0.1"), "10.0.0.1", clock=clock)  # type: ignore[arg-type]
    clock.now += 9.9
    assert not tenure.over()
    assert held.reads == 0  # cheap until the answer that listed it expired
    clock.now += 0.2
    held.step = _answer("10.0.0.1", "10.0.0.2", ttl=30)
    assert not tenure.over()  # still listed: runs to the new answer's expiry
    clock.now += 29
    assert not tenure.over()
    assert held.reads == 1
    clock.now += 2
    held.step = _answer("10.0.0.1", stale=True)
    assert not tenure.over()  # stale (refreshing): look again in a second
    clock.now += 1.1
    held.step = ("h.test", object())  # not held: a lookup started, not waited for
    assert not tenure.over()
    clock.now += 1.1
    held.step = _answer("10.0.0.2")
    assert tenure.over()  # the address left the name


def test_tenure_ends_when_the_name_has_no_addresses_and_never_for_a_literal() -> None:
    clock, held = _Clock(), _Held()
    tenure = Tenure(held, _answer("10.0.0.1", ttl=1), "10.0.0.1", clock=clock)  # type: ignore[arg-type]
    clock.now += 2
    held.step = ResolveError("h.test", "NXDOMAIN accepted")
    assert tenure.over()
    literal = Tenure(held, _answer("10.0.0.1", ttl=0), "10.0.0.1", clock=clock)  # type: ignore[arg-type]
    clock.now += 1e6
    assert not literal.over()


def test_the_race_dials_ipv6_and_ipv4_alike() -> None:
    # A refusing IPv6 address first (nothing listens at the port on ::1), then IPv4.
    outliers = Outliers(eject_for=30)
    report = Report(Emitter(logging.getLogger("test"), []), "h.test", outliers)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with server:
        v6 = socket.create_server(("::1", 0), family=socket.AF_INET6)
        with v6:
            v6_port = v6.getsockname()[1]
            alone = race(["::1"], v6_port, 2.0, report)
            assert alone.sock.family == socket.AF_INET6
            alone.sock.close()
        dialled = race(["::1", "127.0.0.1"], port, 2.0, report)
        dialled.sock.close()
    assert dialled.address == "127.0.0.1"
    assert outliers.split(["::1"], port) == ([], ["::1"])  # refused: ejected
