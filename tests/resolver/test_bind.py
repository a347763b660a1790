"""The resolver against a real BIND 9 whose records change while clients run."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import dns.message
import dns.rdatatype
import pytest

from outlast import Answer, Event, ResolveError, Resolver
from outlast.dns import EmptyAnswerDistrusted
from servers.bind import BindServer

pytestmark = pytest.mark.bind


class Client:
    """Resolves a name every 50 ms in a thread and keeps every answer (or error)."""

    def __init__(self, resolver: Resolver, name: str) -> None:
        self.resolver, self.name = resolver, name
        self.answers: list[tuple[float, Answer | Exception]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result: Answer | Exception = self.resolver.resolve(self.name)
            except Exception as exc:
                result = exc
            self.answers.append((time.monotonic(), result))
            self._stop.wait(0.05)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def since(self, moment: float) -> list[Answer | Exception]:
        return [result for at, result in self.answers if at >= moment]


def test_the_dynamodb_outage_empty_then_nxdomain_then_repaired(
    bind: BindServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("dynamodb")
    bind.set(name, ["127.0.0.10", "127.0.0.11"], ttl=2)
    events: list[Event] = []
    resolver = Resolver(providers=[bind.provider], keep_on_empty=300, listeners=[events.append])
    with resolver, Client(resolver, name) as client:
        time.sleep(0.5)
        outage = time.monotonic()
        bind.empty(name)  # the record goes empty: NOERROR, no addresses
        time.sleep(3)
        bind.delete(name)  # then the name vanishes: NXDOMAIN
        time.sleep(3)
        bind.set(name, ["127.0.0.20"], ttl=2)  # the repair, with a new address
        repaired = time.monotonic()
        deadline = repaired + 2 + 1  # TTL + 1 s
        while time.monotonic() < deadline + 0.5:
            time.sleep(0.1)
    results = [result for _, result in client.answers]
    assert len(results) > 100
    errors = [r for r in results if isinstance(r, Exception)]
    assert errors == [], "every resolve must return addresses"
    during = [r for r in client.since(outage + 2.5) if isinstance(r, Answer)]
    during = [r for r in during if "127.0.0.20" not in r.addresses]
    assert during, "the outage was observed"
    kept = {"127.0.0.10", "127.0.0.11"}  # BIND rotates their order
    assert all(r.stale and set(r.addresses) == kept for r in during), during
    assert any("NODATA distrusted" in r.source for r in during)
    assert any("NXDOMAIN distrusted" in r.source for r in during)
    distrusted = [e for e in events if isinstance(e, EmptyAnswerDistrusted)]
    assert [e.negative for e in distrusted] == ["NODATA"]
    adopted = [
        at for at, r in client.answers if isinstance(r, Answer) and "127.0.0.20" in r.addresses
    ]
    assert adopted, "the repair was never adopted"
    assert adopted[0] - repaired <= 2 + 1
    last = client.answers[-1][1]
    assert isinstance(last, Answer)
    assert last.addresses == ("127.0.0.20",)
    assert not last.stale


@pytest.mark.parametrize("kind", ["provider", "tcp_provider"])
def test_udp_and_tcp_providers(
    bind: BindServer, unique_name: Callable[[str], str], kind: str
) -> None:
    name = unique_name("plain")
    bind.set(name, ["127.0.0.10", "::1"], ttl=30)
    with Resolver(providers=[getattr(bind, kind)]) as resolver:
        answer = resolver.resolve(name)
    assert set(answer.addresses) == {"127.0.0.10", "::1"}
    assert answer.ttl == 30
    assert answer.source == getattr(bind, kind)


def test_dns_over_tls_checks_the_certificate(
    bind: BindServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("dot")
    bind.set(name, ["127.0.0.10"])
    with Resolver(providers=[bind.tls_provider], verify=bind.ca_file) as resolver:
        assert resolver.resolve(name).addresses == ("127.0.0.10",)
    named = f"{bind.tls_provider}#dns.outlast.test"
    with Resolver(providers=[named], verify=bind.ca_file) as resolver:
        assert resolver.resolve(name).addresses == ("127.0.0.10",)
    wrong = f"{bind.tls_provider}#other.example"
    with (
        Resolver(providers=[wrong], verify=bind.ca_file) as resolver,
        pytest.raises(ResolveError, match=r"CERTIFICATE_VERIFY_FAILED.*other\.example"),
    ):
        resolver.resolve(name)
    with (
        Resolver(providers=[bind.tls_provider]) as untrusting,  # the system store
        pytest.raises(ResolveError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        untrusting.resolve(name)


def test_dns_over_https(bind: BindServer, unique_name: Callable[[str], str]) -> None:
    name = unique_name("doh")
    bind.set(name, ["127.0.0.10"])
    with Resolver(providers=[bind.doh_provider], verify=bind.ca_file) as resolver:
        answer = resolver.resolve(name)
        assert answer.addresses == ("127.0.0.10",)
        assert answer.source == bind.doh_provider
        bind.delete(name)
        with pytest.raises(ResolveError, match="NXDOMAIN"):
            resolver.resolve(unique_name("missing"))
    with (
        Resolver(providers=[bind.doh_provider]) as untrusting,
        pytest.raises(ResolveError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        untrusting.resolve(name)


def test_async_callers_through_an_outage(
    bind: BindServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("async")
    bind.set(name, ["127.0.0.10"], ttl=1)

    async def main(resolver: Resolver) -> list[Answer]:
        answers = [await resolver.aresolve(name)]
        bind.delete(name)
        for _ in range(40):  # 2 s of NXDOMAIN
            answers.append(await resolver.aresolve(name))
            await asyncio.sleep(0.05)
        return answers

    with Resolver(providers=[bind.provider]) as resolver:
        answers = asyncio.run(main(resolver))
    assert all(a.addresses == ("127.0.0.10",) for a in answers)
    assert any("NXDOMAIN distrusted" in a.source for a in answers)


class AAAADropper:
    """A UDP forwarder in front of BIND that silently drops every AAAA query.

    What older corporate resolvers and some middleboxes do; dnspython reads the
    question, everything else is relayed byte for byte.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def provider(self) -> str:
        return f"udp://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> AAAADropper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            question = dns.message.from_wire(wire).question[0]
            if question.rdtype == dns.rdatatype.AAAA:
                self.dropped += 1
                continue
            threading.Thread(target=self._relay, args=(wire, peer), daemon=True).start()

    def _relay(self, wire: bytes, peer: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            out.settimeout(2)
            out.sendto(wire, self.upstream)
            try:
                reply, _ = out.recvfrom(65535)
            except TimeoutError:
                return
        self.sock.sendto(reply, peer)


def test_bind_behind_a_middlebox_that_drops_aaaa(
    bind: BindServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("v4only-path")
    bind.set(name, ["127.0.0.10", "2001:db8::10"], ttl=1)
    with AAAADropper((bind.address, bind.port)) as middlebox:
        # A cold name through the middlebox: the A answer, no error.
        with Resolver(providers=[middlebox.provider], timeout=0.5) as resolver:
            started = time.monotonic()
            answer = resolver.resolve(name)  # cold: the A answer, at the deadline
            took = time.monotonic() - started
        assert answer.addresses == ("127.0.0.10",)
        assert not answer.stale
        assert took < 0.5 + 0.5  # the timeout, not an error after it
        assert middlebox.dropped >= 1
        with Resolver(
            providers=[bind.provider, middlebox.provider],
            timeout=0.5,
            hedge_delay=0.05,
            min_ttl=0.3,
            max_ttl=0.3,
        ) as resolver:
            assert set(resolver.resolve(name).addresses) == {"127.0.0.10", "2001:db8::10"}
            # BIND becomes unreachable for this resolver: only the middlebox is left.
            resolver._pool._health[id(resolver._pool.providers[0])].ejected_until = 1e18
            sources = []
            for _ in range(8):  # 2.4 s: several refreshes through the middlebox
                started = time.monotonic()
                held = resolver.resolve(name)
                assert time.monotonic() - started < 0.3  # served at once, not the 0.5 s timeout
                assert set(held.addresses) == {"127.0.0.10", "2001:db8::10"}, held
                sources.append(held.source)
                time.sleep(0.3)
            assert any("AAAA" in source for source in sources), sources
