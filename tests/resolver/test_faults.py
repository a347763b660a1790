"""The resolver against a DNS server that fails on demand (drop, delay, SERVFAIL, ...)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from outlast import Event, ResolveError, Resolver
from outlast.dns import ProviderEjected, ProviderRestored
from outlast.testing import DNSServer

from .scripted import ManualClock


@pytest.fixture
def second_dns() -> Iterator[DNSServer]:
    with DNSServer(address="127.0.0.2") as server:
        yield server


@pytest.mark.parametrize(("mode", "reason"), [("servfail", "SERVFAIL"), ("refused", "REFUSED")])
def test_error_answers_serve_stale_and_are_never_cached(
    fault_dns: DNSServer, unique_name: Callable[[str], str], mode: str, reason: str
) -> None:
    name, cold = unique_name("api"), unique_name("cold")
    fault_dns.set(name, ["127.0.0.10"], ttl=1)
    with Resolver(providers=[fault_dns.provider], min_ttl=0.2, max_ttl=0.2) as resolver:
        resolver.resolve(name)
        fault_dns.fail(mode)  # type: ignore[arg-type]
        time.sleep(0.3)
        for _ in range(5):
            answer = resolver.resolve(name)
            assert answer.addresses == ("127.0.0.10",)
            assert answer.stale
            time.sleep(0.1)
        assert reason in resolver.resolve(name).source
        with pytest.raises(ResolveError, match=reason):
            resolver.resolve(cold)
        fault_dns.fail(None)
        fault_dns.set(cold, ["127.0.0.11"])
        assert resolver.resolve(cold).addresses == ("127.0.0.11",)  # no negative was cached


def test_a_silent_server_times_out_and_stale_is_served(
    fault_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("api")
    fault_dns.set(name, ["127.0.0.10"], ttl=1)
    with Resolver(
        providers=[fault_dns.provider], timeout=0.3, min_ttl=0.2, max_ttl=0.2
    ) as resolver:
        resolver.resolve(name)
        fault_dns.fail("drop")
        time.sleep(0.3)
        started = time.monotonic()
        answer = resolver.resolve(name)
        assert time.monotonic() - started < 0.25  # served at once, not after the 0.3 s timeout
        assert answer.stale
        time.sleep(0.5)
        assert "timed out" in resolver.resolve(name).source
        with pytest.raises(ResolveError, match="timed out"):
            resolver.resolve(unique_name("cold"))


def test_a_truncated_udp_answer_is_asked_again_over_tcp(
    fault_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("big")
    fault_dns.set(name, [f"127.0.1.{i}" for i in range(1, 40)])
    fault_dns.truncate(True)
    with Resolver(providers=[fault_dns.provider]) as resolver:
        answer = resolver.resolve(name)
    assert len(answer.addresses) == 39
    assert fault_dns.tcp_queries >= 1


def test_a_blackholed_first_provider_costs_one_hedge_delay_then_is_ejected(
    fault_dns: DNSServer, second_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    names = [unique_name("hedge") for _ in range(6)]
    for name in names:
        second_dns.set(name, ["127.0.0.10"])
    fault_dns.fail("drop")
    events: list[Event] = []
    with Resolver(
        providers=[fault_dns.provider, second_dns.provider],
        timeout=0.4,
        hedge_delay=0.1,
        listeners=[events.append],
    ) as resolver:
        times = []
        for name in names:
            started = time.monotonic()
            assert resolver.resolve(name).addresses == ("127.0.0.10",)
            times.append(time.monotonic() - started)
            time.sleep(0.25)  # lets the blackholed query time out in the background
    assert all(t < 0.35 for t in times), times  # never the 0.4 s timeout, let alone 2 s
    ejected = [e for e in events if isinstance(e, ProviderEjected)]
    assert [e.provider for e in ejected] == [fault_dns.provider]
    assert fault_dns.queries <= 2 * 2 + 2  # two lookups (A + AAAA each) before ejection


def test_an_ejected_provider_returns_after_a_good_probe(
    fault_dns: DNSServer, second_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    clock = ManualClock()
    events: list[Event] = []
    fault_dns.fail("servfail")
    with Resolver(
        providers=[fault_dns.provider, second_dns.provider],
        clock=clock,
        listeners=[events.append],
    ) as resolver:
        for _ in range(2):
            name = unique_name("probe")
            second_dns.set(name, ["127.0.0.10"])
            resolver.resolve(name)
        assert any(isinstance(e, ProviderEjected) for e in events)
        fault_dns.fail(None)
        name = unique_name("probe")
        fault_dns.set(name, ["127.0.0.20"])
        second_dns.set(name, ["127.0.0.10"])
        fault_dns.reset_counts()
        assert resolver.resolve(name).addresses == ("127.0.0.10",)  # still ejected
        assert fault_dns.queries == 0
        clock.advance(6)  # the first ejection lasts 5 s
        name = unique_name("probe")
        fault_dns.set(name, ["127.0.0.20"])
        assert resolver.resolve(name).addresses == ("127.0.0.20",)
    assert any(isinstance(e, ProviderRestored) for e in events)


def test_a_slow_provider_is_overtaken_by_the_hedge(
    fault_dns: DNSServer, second_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("slow")
    fault_dns.set(name, ["127.0.0.20"])
    second_dns.set(name, ["127.0.0.10"])
    fault_dns.delay(0.5)
    with Resolver(
        providers=[fault_dns.provider, second_dns.provider], timeout=1.0, hedge_delay=0.05
    ) as resolver:
        answer = resolver.resolve(name)
    assert answer.addresses == ("127.0.0.10",)
    assert answer.source == second_dns.provider


def test_100_threads_on_a_cold_name_send_one_query_per_record_type(
    fault_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("herd")
    fault_dns.set(name, ["127.0.0.10", "::1"])
    fault_dns.delay(0.2)
    barrier = threading.Barrier(100)
    answers: list[tuple[str, ...]] = []
    with Resolver(providers=[fault_dns.provider]) as resolver:

        def worker() -> None:
            barrier.wait()
            answers.append(resolver.resolve(name).addresses)

        threads = [threading.Thread(target=worker) for _ in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(answers) == 100
    assert all(set(a) == {"127.0.0.10", "::1"} for a in answers)
    assert fault_dns.queries_for(name, "A") == 1
    assert fault_dns.queries_for(name, "AAAA") == 1


def test_100_tasks_on_a_cold_name_send_one_query_per_record_type(
    fault_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("herd")
    fault_dns.set(name, ["127.0.0.10"])
    fault_dns.delay(0.2)

    async def main(resolver: Resolver) -> list[tuple[str, ...]]:
        answers = await asyncio.gather(*(resolver.aresolve(name) for _ in range(100)))
        return [a.addresses for a in answers]

    with Resolver(providers=[fault_dns.provider]) as resolver:
        assert asyncio.run(main(resolver)) == [("127.0.0.10",)] * 100
    assert fault_dns.queries_for(name, "A") == 1
    assert fault_dns.queries_for(name, "AAAA") == 1


def test_callers_on_several_event_loops_share_one_resolver(
    fault_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("loops")
    fault_dns.set(name, ["127.0.0.10"])
    fault_dns.delay(0.1)
    results: list[tuple[str, ...]] = []
    with Resolver(providers=[fault_dns.provider]) as resolver:

        def run_loop() -> None:
            results.append(asyncio.run(resolver.aresolve(name)).addresses)

        threads = [threading.Thread(target=run_loop) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [("127.0.0.10",)] * 4
    assert fault_dns.queries_for(name, "A") == 1


def test_a_name_whose_getaddrinfo_hangs_does_not_starve_other_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Found by b2: the system provider ran at most 4 getaddrinfo threads and started
    # two more each time a hanging name was asked again, so one name whose DNS hangs,
    # asked twice, made every other name fail for as long as it hung.
    import socket

    real = socket.getaddrinfo
    release = threading.Event()
    lock = threading.Lock()
    hanging = 0
    most = 0

    def getaddrinfo(host: str, *args: object, **kwargs: object) -> object:
        nonlocal hanging, most
        if str(host).endswith(".hang.test"):
            with lock:
                hanging += 1
                most = max(most, hanging)
            try:
                release.wait(30)
            finally:
                with lock:
                    hanging -= 1
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    resolver = Resolver(providers=["system"], timeout=0.05)
    try:
        for _ in range(10):
            with pytest.raises(ResolveError, match="timed out"):
                resolver.resolve("api.hang.test")
        assert resolver.resolve("localhost").addresses
        assert most <= 2  # one call per family, shared by every later lookup
    finally:
        release.set()
        resolver.close()
