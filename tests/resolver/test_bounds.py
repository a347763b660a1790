"""Bounds that hold on every path: age, TTL 0, closing, listeners, static, outage logs."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outlast import ConfigError, Event, ResolveError, Resolver
from outlast.dns import (
    AnswerUpdated,
    LastKnownGoodEnded,
    Outcome,
    ServingLastKnownGood,
    StaticServed,
)

from .scripted import ManualClock, ScriptedProvider


def settle(resolver: Resolver) -> None:
    deadline = time.monotonic() + 10
    while any(not f.done() for f in list(resolver._inflight.values())):
        assert time.monotonic() < deadline, "a lookup never finished"
        time.sleep(0.005)


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def resolver(
    provider: ScriptedProvider, clock: ManualClock, events: list[Event]
) -> Iterator[Resolver]:
    with Resolver(
        providers=[provider],
        clock=clock,
        listeners=[events.append],
        keep_on_empty=60,
        stale_ttl=300,
        negative_ttl=5,
    ) as resolver:
        yield resolver


def test_an_answer_too_old_to_serve_stays_too_old_when_the_name_goes_empty(
    resolver: Resolver, provider: ScriptedProvider, clock: ManualClock
) -> None:
    provider.set("old.example", "10.0.0.1", ttl=10)
    resolver.resolve("old.example")
    clock.advance(10 + 300 + 1)  # unused for longer than TTL + STALE_TTL
    provider.fail("old.example")
    with pytest.raises(ResolveError, match="SERVFAIL"):
        resolver.resolve("old.example")
    provider.negative("old.example", "NXDOMAIN")
    with pytest.raises(ResolveError, match="NXDOMAIN"):
        resolver.resolve("old.example")  # not the ancient answer, "distrusted"


def test_a_distrusted_answer_is_served_no_longer_than_ttl_plus_stale_ttl(
    provider: ScriptedProvider, clock: ManualClock
) -> None:
    with Resolver(
        providers=[provider], clock=clock, keep_on_empty=10_000, stale_ttl=50
    ) as resolver:
        provider.set("api.example", "10.0.0.1", ttl=10)
        resolver.resolve("api.example")
        provider.negative("api.example", "NXDOMAIN")
        clock.advance(11)
        assert resolver.resolve("api.example").stale  # distrusted: LKG served
        settle(resolver)
        clock.advance(30)
        assert "distrusted" in resolver.resolve("api.example").source
        settle(resolver)
        clock.advance(30)  # 71 s after learning: older than TTL + STALE_TTL (60 s)
        with pytest.raises(ResolveError, match="NXDOMAIN"):
            resolver.resolve("api.example")


def test_a_ttl_0_answer_a_caller_waited_for_is_fresh(provider: ScriptedProvider) -> None:
    provider.set("zero.example", "10.0.0.1", ttl=0)
    with Resolver(providers=[provider], min_ttl=0) as resolver:
        answer = resolver.resolve("zero.example")
        assert answer.addresses == ("10.0.0.1",)
        assert not answer.stale
        assert answer.source == "scripted"


class PerNameDelay(ScriptedProvider):
    def __init__(self) -> None:
        super().__init__()
        self.delays: dict[str, float] = {}

    async def lookup(self, host: str, timeout: float) -> Outcome:
        await asyncio.sleep(self.delays.get(host, 0.0))
        return await super().lookup(host, timeout)


def test_resolve_from_a_listener_is_refused_alone() -> None:
    provider = PerNameDelay()
    provider.set("slow.example", "10.0.0.1")
    provider.set("fast.example", "10.0.0.2")
    provider.delays["slow.example"] = 0.5
    provider.delays["fast.example"] = 0.1
    refused: list[Exception] = []

    def listener(event: Event) -> None:
        if isinstance(event, AnswerUpdated) and event.host == "fast.example":
            try:
                resolver.resolve("slow.example")  # on the resolver's own thread
            except ResolveError as exc:
                refused.append(exc)

    with Resolver(providers=[provider], listeners=[listener]) as resolver:
        results: list[object] = []
        waiter = threading.Thread(target=lambda: results.append(resolver.resolve("slow.example")))
        waiter.start()
        time.sleep(0.05)  # the slow lookup is in flight, the thread waits on it
        resolver.resolve("fast.example")
        waiter.join(timeout=5)
    assert len(refused) == 1
    assert "own thread" in str(refused[0])
    assert len(results) == 1
    assert getattr(results[0], "addresses", None) == ("10.0.0.1",)  # not "closed"


def test_static_addresses_are_served_at_once_after_the_first_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = ScriptedProvider()
    provider.delay = 5.0  # silent: every lookup outlasts the timeout
    events: list[Event] = []
    with Resolver(
        providers=[provider],
        timeout=0.3,
        static={"svc.test": ["127.0.0.1"]},
        listeners=[events.append],
    ) as resolver:
        started = time.monotonic()
        first = resolver.resolve("svc.test")
        assert first.addresses == ("127.0.0.1",)
        assert time.monotonic() - started >= 0.3  # the first one waited for the providers
        started = time.monotonic()
        for _ in range(50):
            answer = resolver.resolve("svc.test")
            assert answer.addresses == ("127.0.0.1",)
            assert answer.stale
            assert answer.source.startswith("static")
        assert time.monotonic() - started < 0.5  # 50 connections, no DNS wait each
        assert 1 <= provider.calls["svc.test"] <= 3  # refreshes in the background, backed off
        provider.delay = 0.0
        provider.set("svc.test", "10.0.0.9")
        settle(resolver)  # a refresh still in flight ends (timed out)
        resolver._static_mode["svc.test"][1] = 0.0  # the next refresh is due now
        resolver.resolve("svc.test")
        settle(resolver)
        assert resolver.resolve("svc.test").addresses == ("10.0.0.9",)
    assert sum(isinstance(e, StaticServed) for e in events) == 1
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 1
    assert any(isinstance(e, LastKnownGoodEnded) and e.host == "svc.test" for e in events)


def test_a_total_outage_logs_one_warning_per_name_and_one_info_when_it_ends(
    resolver: Resolver,
    provider: ScriptedProvider,
    clock: ManualClock,
    events: list[Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="outlast")
    for name in ("a.example", "b.example"):
        provider.set(name, "10.0.0.1", ttl=10)
        resolver.resolve(name)
    for name in ("a.example", "b.example"):
        provider.fail(name)
    clock.advance(11)
    for _ in range(20):  # 20 refreshes fail, each backed off
        for name in ("a.example", "b.example"):
            assert resolver.resolve(name).stale
        settle(resolver)
        clock.advance(10)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.outlast_host for r in warnings] == ["a.example", "b.example"]  # type: ignore[attr-defined]
    assert all(r.outlast_event == "dns.lkg_serving" for r in warnings)  # type: ignore[attr-defined]
    assert "SERVFAIL" in warnings[0].getMessage()
    serving = [e for e in events if isinstance(e, ServingLastKnownGood)]
    assert len(serving) == 2
    provider.set("a.example", "10.0.0.1", ttl=10)
    resolver.resolve("a.example")
    settle(resolver)
    ended = [e for e in events if isinstance(e, LastKnownGoodEnded)]
    assert [e.host for e in ended] == ["a.example"]
    assert ended[0].lasted >= 19 * 10
    info = [r for r in caplog.records if getattr(r, "outlast_event", "") == "dns.lkg_ended"]
    assert len(info) == 1
    assert info[0].levelno == logging.INFO


def test_a_family_that_answers_empty_is_distrusted_like_an_empty_name(
    resolver: Resolver, provider: ScriptedProvider, clock: ManualClock, events: list[Event]
) -> None:
    from outlast.dns import EmptyAnswerAccepted, EmptyAnswerDistrusted, Positive

    provider.set("dual.example", "10.0.0.1", "2001:db8::1", ttl=10)
    resolver.resolve("dual.example")
    only_v4 = Positive(("10.0.0.1",), 10.0, "scripted", empty=frozenset({6}))
    provider.outcomes["dual.example"] = only_v4  # AAAA: NOERROR, no records
    clock.advance(11)
    resolver.resolve("dual.example")
    settle(resolver)
    answer = resolver.resolve("dual.example")
    assert set(answer.addresses) == {"10.0.0.1", "2001:db8::1"}  # AAAA kept, distrusted
    assert answer.stale
    assert "AAAA answered empty" in answer.source
    distrusted = [e for e in events if isinstance(e, EmptyAnswerDistrusted)]
    assert [e.negative for e in distrusted] == ["NODATA (AAAA)"]
    for _ in range(8):  # keep_on_empty is 60 s: the empty family is re-checked meanwhile
        clock.advance(10)
        resolver.resolve("dual.example")
        settle(resolver)
    answer = resolver.resolve("dual.example")
    assert answer.addresses == ("10.0.0.1",)  # believed after 60 s
    assert not answer.stale
    assert [e.negative for e in events if isinstance(e, EmptyAnswerAccepted)] == ["NODATA (AAAA)"]


def test_a_partial_answer_outweighs_a_later_negative_and_merges_per_family() -> None:
    from outlast.dns import Positive

    first, second, third = (ScriptedProvider(n) for n in ("first", "second", "third"))
    first.outcomes["api.example"] = Positive(("10.0.0.1",), 30.0, "first", failed=frozenset({6}))
    second.negative("api.example", "NXDOMAIN")
    third.outcomes["api.example"] = Positive(("2001:db8::1",), 30.0, "third", failed=frozenset({4}))
    with Resolver(providers=[first, second, third], hedge_delay=0.5) as resolver:
        answer = resolver.resolve("api.example")
    assert set(answer.addresses) == {"10.0.0.1", "2001:db8::1"}
    assert not answer.stale


def test_outage_warnings_are_rate_limited_per_name_and_across_names(
    resolver: Resolver, provider: ScriptedProvider, clock: ManualClock, events: list[Event]
) -> None:
    from outlast.dns._table import OUTAGE_WARNING_INTERVAL, OUTAGE_WARNINGS_MAX

    names = [f"n{i}.example" for i in range(OUTAGE_WARNINGS_MAX + 10)]
    for name in names:
        provider.set(name, "10.0.0.1", ttl=10)
        resolver.resolve(name)
    for flap in range(3):  # a flapping provider: down, up, down, up, ...
        for name in names:
            provider.fail(name)
        clock.advance(11)
        for name in names:
            resolver.resolve(name)
        settle(resolver)
        for name in names:
            provider.set(name, "10.0.0.1", ttl=10)
        clock.advance(11)
        for name in names:
            resolver.resolve(name)
        settle(resolver)
        if flap == 1:
            clock.advance(OUTAGE_WARNING_INTERVAL)
    serving = [e for e in events if isinstance(e, ServingLastKnownGood)]
    ended = [e for e in events if isinstance(e, LastKnownGoodEnded)]
    # 3 outages in all, but the second came within the interval of the first: 2 logged,
    # each for at most OUTAGE_WARNINGS_MAX names; every logged start has its end.
    assert len(serving) == 2 * OUTAGE_WARNINGS_MAX
    assert sorted(e.host for e in ended) == sorted(e.host for e in serving)


def test_a_hung_getaddrinfo_does_not_hold_up_interpreter_exit() -> None:
    # The system provider asks on daemon threads: a ThreadPoolExecutor's workers would
    # be joined at exit, so a getaddrinfo stuck in the OS kept the process alive.
    code = (
        "import socket, time\n"
        "socket.getaddrinfo = lambda *a, **k: time.sleep(60)\n"
        "import outlast\n"
        "resolver = outlast.Resolver(providers=['system'], timeout=0.2)\n"
        "try:\n"
        "    resolver.resolve('hung.example')\n"
        "except outlast.ResolveError as exc:\n"
        "    print('refused:', exc)\n"
    )
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert "refused:" in out.stdout
    assert time.monotonic() - started < 15  # generous: it used to wait the full 60 s


def test_a_relative_cache_file_stays_where_it_was_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    monkeypatch.chdir(tmp_path / "one")
    provider = ScriptedProvider()
    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_file="cache.json") as resolver:
        resolver.resolve("api.example")
        monkeypatch.chdir(tmp_path / "two")  # a later chdir must not move the file
    assert (tmp_path / "one" / "cache.json").exists()
    assert not (tmp_path / "two" / "cache.json").exists()


@pytest.mark.parametrize("timeout", ["0.1", float("nan"), True])
def test_a_bad_timeout_is_a_config_error(timeout: object) -> None:
    provider = ScriptedProvider()
    with Resolver(providers=[provider]) as resolver, pytest.raises(ConfigError, match="timeout"):
        resolver.resolve("cold.example", timeout=timeout)  # type: ignore[arg-type]
