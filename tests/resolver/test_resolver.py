"""The resolver's rules, driven through a scripted provider and a hand-moved clock.

These prove the logic (what is served, when a query is sent); tests against real DNS
servers are in test_bind.py and test_faults.py.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from outlast import Event, ResolveError, Resolver
from outlast.dns import (
    AnswerUpdated,
    CacheHit,
    EmptyAnswerAccepted,
    EmptyAnswerDistrusted,
    RefreshFailed,
    StaleServed,
    StaticServed,
)

from .scripted import ManualClock, ScriptedProvider


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def settle(resolver: Resolver) -> None:
    """Wait until no lookup is in flight."""
    wait_until(lambda: not any(not f.done() for f in list(resolver._inflight.values())))


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


def test_a_fresh_answer_is_served_from_memory(
    resolver: Resolver, provider: ScriptedProvider, events: list[Event]
) -> None:
    provider.set("api.example", "10.0.0.1", "10.0.0.2", ttl=30)
    first = resolver.resolve("api.example")
    again = resolver.resolve("api.example")
    assert first.addresses == ("10.0.0.1", "10.0.0.2")
    assert not first.stale
    assert first.source == "scripted"
    assert again is first
    assert provider.calls["api.example"] == 1
    assert any(isinstance(e, CacheHit) for e in events)
    assert any(isinstance(e, AnswerUpdated) for e in events)


def test_names_are_case_insensitive(resolver: Resolver, provider: ScriptedProvider) -> None:
    provider.set("api.example", "10.0.0.1")
    assert resolver.resolve("API.Example.").addresses == ("10.0.0.1",)
    assert resolver.resolve("api.example").addresses == ("10.0.0.1",)
    assert provider.calls["api.example"] == 1


def test_ttls_are_clamped(provider: ScriptedProvider, clock: ManualClock) -> None:
    provider.set("short.example", "10.0.0.1", ttl=0)
    provider.set("long.example", "10.0.0.2", ttl=10**6)
    with Resolver(providers=[provider], clock=clock, min_ttl=2, max_ttl=100) as resolver:
        assert resolver.resolve("short.example").ttl == 2
        assert resolver.resolve("long.example").ttl == 100


def test_an_expired_answer_is_served_at_once_while_one_refresh_runs(
    resolver: Resolver, provider: ScriptedProvider, clock: ManualClock
) -> None:
    provider.set("api.example", "10.0.0.1", ttl=10)
    resolver.resolve("api.example")
    provider.set("api.example", "10.0.0.9", ttl=10)
    provider.delay = 0.2
    clock.advance(11)
    answers = [resolver.resolve("api.example") for _ in range(20)]
    assert all(a.stale and a.addresses == ("10.0.0.1",) for a in answers)
    assert "refreshing" in answers[0].source
    settle(resolver)
    assert provider.calls["api.example"] == 2  # one refresh for twenty stale reads
    fresh = resolver.resolve("api.example")
    assert fresh.addresses == ("10.0.0.9",)
    assert not fresh.stale


def test_a_name_in_use_is_prefetched_before_it_expires(
    resolver: Resolver, provider: ScriptedProvider, clock: ManualClock
) -> None:
    provider.set("api.example", "10.0.0.1", ttl=10)
    resolver.resolve("api.example")
    clock.advance(9)  # past 85% of the TTL, not yet expired
    answer = resolver.resolve("api.example")
    assert not answer.stale
    settle(resolver)
    assert provider.calls["api.example"] == 2
    clock.advance(2)  # the original answer would have expired now
    assert not resolver.resolve("api.example").stale


def test_stale_is_served_while_providers_fail_then_given_up_after_stale_ttl(
    resolver: Resolver, provider: ScriptedProvider, clock: ManualClock, events: list[Event]
) -> None:
    provider.set("api.example", "10.0.0.1", ttl=10)
    resolver.resolve("api.example")
    provider.fail("api.example", "timed out after 1s")
    for _ in range(5):
        clock.advance(50)
        answer = resolver.resolve("api.example")
        assert answer.stale
        assert answer.addresses == ("10.0.0.1",)
        settle(resolver)
    assert (
        "refresh failing (scripted: timed out after 1s)" in resolver.resolve("api.example").source
    )
    assert any(isinstance(e, RefreshFailed) for e in events)
    assert any(isinstance(e, StaleServed) for e in events)
    clock.advance(100)  # 360 s past expiry; stale_ttl is 300
    with pytest.raises(ResolveError, match="no provider answered"):
        resolver.resolve("api.example")


def test_failed_refreshes_back_off(
    resolver: Resolver, provider: ScriptedProvider, clock: ManualClock
) -> None:
    provider.set("api.example", "10.0.0.1", ttl=10)
    resolver.resolve("api.example")
    provider.fail("api.example")
    clock.advance(11)
    for _ in range(50):
        resolver.resolve("api.example")
        settle(resolver)
        clock.advance(0.01)
    # 50 reads over 0.5 s: the first refresh fails, the next waits 0.25-0.5 s.
    assert provider.calls["api.example"] <= 3


def test_a_failure_is_never_cached_as_a_negative_answer(
    resolver: Resolver, provider: ScriptedProvider
) -> None:
    provider.fail("new.example", "timed out after 1s")
    with pytest.raises(ResolveError, match="timed out"):
        resolver.resolve("new.example")
    provider.set("new.example", "10.0.0.5")
    assert resolver.resolve("new.example").addresses == ("10.0.0.5",)


@pytest.mark.parametrize("kind", ["NXDOMAIN", "NODATA"])
def test_a_sudden_empty_answer_is_distrusted_for_keep_on_empty(
    resolver: Resolver,
    provider: ScriptedProvider,
    clock: ManualClock,
    events: list[Event],
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider.set("dynamodb.example", "10.0.0.1", ttl=5)
    resolver.resolve("dynamodb.example")
    provider.negative("dynamodb.example", kind, ttl=5)
    clock.advance(6)
    resolver.resolve("dynamodb.example")  # stale; its refresh sees the negative
    settle(resolver)
    for _ in range(10):  # 50 s of negatives, keep_on_empty is 60 s
        answer = resolver.resolve("dynamodb.example")
        assert answer.addresses == ("10.0.0.1",)
        assert answer.stale
        assert f"{kind} distrusted" in answer.source
        settle(resolver)
        clock.advance(5)
    distrusted = [e for e in events if isinstance(e, EmptyAnswerDistrusted)]
    assert len(distrusted) == 1
    assert distrusted[0].negative == kind
    assert distrusted[0].kept == ("10.0.0.1",)
    assert "dns.empty_distrusted" in caplog.text
    clock.advance(15)
    resolver.resolve("dynamodb.example")
    settle(resolver)
    with pytest.raises(ResolveError, match=kind):
        resolver.resolve("dynamodb.example")
    assert any(isinstance(e, EmptyAnswerAccepted) for e in events)


def test_a_repair_is_adopted_within_the_ttl(
    resolver: Resolver, provider: ScriptedProvider, clock: ManualClock
) -> None:
    provider.set("dynamodb.example", "10.0.0.1", ttl=5)
    resolver.resolve("dynamodb.example")
    provider.negative("dynamodb.example")
    clock.advance(6)
    resolver.resolve("dynamodb.example")
    settle(resolver)
    provider.set("dynamodb.example", "10.0.0.2", ttl=5)  # the repair
    repaired_at = clock.now
    while resolver.resolve("dynamodb.example").addresses != ("10.0.0.2",):
        settle(resolver)
        clock.advance(0.05)
        assert clock.now - repaired_at <= 5 + 1, "repair not adopted within TTL + 1 s"
    assert not resolver.resolve("dynamodb.example").stale


def test_negative_answers_for_unknown_names_are_cached_no_longer_than_negative_ttl(
    resolver: Resolver, provider: ScriptedProvider, clock: ManualClock
) -> None:
    provider.negative("typo.example", ttl=3600)
    for _ in range(3):
        with pytest.raises(ResolveError, match="NXDOMAIN"):
            resolver.resolve("typo.example")
    assert provider.calls["typo.example"] == 1
    clock.advance(5.1)
    with pytest.raises(ResolveError, match="NXDOMAIN"):
        resolver.resolve("typo.example")
    assert provider.calls["typo.example"] == 2


def test_static_addresses_are_the_last_resort(
    provider: ScriptedProvider, clock: ManualClock, events: list[Event]
) -> None:
    provider.fail("db.example")
    provider.set("api.example", "10.0.0.1")
    static = {"db.example": ["10.9.9.9"], "api.example": ["10.9.9.8"]}
    with Resolver(
        providers=[provider], clock=clock, static=static, listeners=[events.append]
    ) as resolver:
        answer = resolver.resolve("db.example")
        assert answer.addresses == ("10.9.9.9",)
        assert answer.stale
        assert answer.source.startswith("static")
        assert resolver.resolve("api.example").addresses == ("10.0.0.1",)  # DNS first
    assert any(isinstance(e, StaticServed) for e in events)


def test_static_addresses_from_the_environment() -> None:
    provider = ScriptedProvider()
    with Resolver.from_env(
        {"OUTLAST_DNS_STATIC": "db.example=10.9.9.9"}, providers=[provider]
    ) as resolver:
        assert resolver.resolve("db.example").addresses == ("10.9.9.9",)


def test_one_lookup_serves_100_threads_on_a_cold_name(
    resolver: Resolver, provider: ScriptedProvider
) -> None:
    provider.set("cold.example", "10.0.0.1")
    provider.delay = 0.2
    barrier = threading.Barrier(100)
    results: list[tuple[str, ...]] = []

    def worker() -> None:
        barrier.wait()
        results.append(resolver.resolve("cold.example").addresses)

    threads = [threading.Thread(target=worker) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [("10.0.0.1",)] * 100
    assert provider.calls["cold.example"] == 1


def test_one_lookup_serves_100_tasks_on_a_cold_name(
    resolver: Resolver, provider: ScriptedProvider
) -> None:
    provider.set("cold.example", "10.0.0.1")
    provider.delay = 0.2

    async def main() -> list[tuple[str, ...]]:
        answers = await asyncio.gather(*(resolver.aresolve("cold.example") for _ in range(100)))
        return [a.addresses for a in answers]

    assert asyncio.run(main()) == [("10.0.0.1",)] * 100
    assert provider.calls["cold.example"] == 1


def test_a_cancelled_waiter_does_not_cancel_the_lookup_for_others(
    resolver: Resolver, provider: ScriptedProvider
) -> None:
    provider.set("cold.example", "10.0.0.1")
    provider.delay = 0.2

    async def main() -> tuple[str, ...]:
        first = asyncio.ensure_future(resolver.aresolve("cold.example"))
        second = asyncio.ensure_future(resolver.aresolve("cold.example"))
        await asyncio.sleep(0.05)
        first.cancel()
        return (await second).addresses

    assert asyncio.run(main()) == ("10.0.0.1",)
    assert provider.calls["cold.example"] == 1


def test_the_cache_never_holds_more_than_its_size(provider: ScriptedProvider) -> None:
    for i in range(3000):
        provider.set(f"n{i}.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_size=500) as resolver:
        for i in range(3000):
            resolver.resolve(f"n{i}.example")
            assert len(resolver._table) <= 500
        assert len(resolver._table) == 500


def test_a_listener_that_raises_breaks_nothing(
    provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], listeners=[broken]) as resolver:
        assert resolver.resolve("api.example").addresses == ("10.0.0.1",)
    assert "listener bug" in caplog.text


def test_disabled_asks_the_system_directly_and_caches_nothing(provider: ScriptedProvider) -> None:
    with Resolver.from_env({"OUTLAST_DISABLE": "1"}, providers=[provider]) as resolver:
        answer = resolver.resolve("localhost")
        assert "127.0.0.1" in answer.addresses
        assert "disabled" in answer.source
        assert asyncio.run(resolver.aresolve("localhost")).addresses == answer.addresses
        assert len(resolver._table) == 0
    assert provider.calls.total() == 0


def test_the_system_provider_resolves_localhost() -> None:
    with Resolver(providers=["system"]) as resolver:
        answer = resolver.resolve("localhost")
        assert "127.0.0.1" in answer.addresses
        assert answer.source == "system"


def test_from_env_reads_the_variables() -> None:
    env = {"OUTLAST_DNS_PROVIDERS": "udp://127.0.0.1:5353,system", "OUTLAST_DNS_TIMEOUT": "0.3"}
    with Resolver.from_env(env) as resolver:
        assert [p.name for p in resolver._pool.providers] == ["udp://127.0.0.1:5353", "system"]
        assert resolver._pool.timeout == 0.3
    assert "names=0" in repr(resolver)


def test_a_closed_resolver_refuses_lookups(provider: ScriptedProvider) -> None:
    provider.set("api.example", "10.0.0.1")
    resolver = Resolver(providers=[provider])
    resolver.close()
    resolver.close()  # idempotent
    with pytest.raises(ResolveError, match="closed"):
        resolver.resolve("api.example")


def test_a_closed_resolver_serves_what_it_holds_and_never_raises_runtime_error(
    provider: ScriptedProvider, clock: ManualClock
) -> None:
    provider.set("api.example", "10.0.0.1", ttl=10)
    resolver = Resolver(providers=[provider], clock=clock)
    assert resolver.resolve("api.example").addresses == ("10.0.0.1",)
    resolver.close()
    assert resolver.resolve("api.example").addresses == ("10.0.0.1",)  # fresh
    clock.advance(9)  # past 85% of the TTL: a refresh would be due
    assert resolver.resolve("api.example").addresses == ("10.0.0.1",)
    clock.advance(5)  # expired: served stale, nothing is asked
    answer = resolver.resolve("api.example")
    assert answer.stale
    assert answer.addresses == ("10.0.0.1",)
    with pytest.raises(ResolveError, match="closed"):
        resolver.resolve("cold.example")


def test_bad_arguments_name_what_was_wrong() -> None:
    from outlast import ConfigError

    with pytest.raises(ConfigError, match="timeout=-1 is invalid"):
        Resolver(timeout=-1)
    with pytest.raises(ConfigError, match="min_ttl=10 is invalid: expected at most max_ttl"):
        Resolver(min_ttl=10, max_ttl=5)
    with pytest.raises(ConfigError, match="providers"):
        Resolver(providers=[])
    with pytest.raises(ConfigError, match=r"providers='8\.8\.8\.8' is invalid"):
        Resolver(providers=["8.8.8.8"])


def test_durations_accept_timedelta() -> None:
    from datetime import timedelta

    with Resolver(timeout=timedelta(milliseconds=250)) as resolver:
        assert resolver._pool.timeout == 0.25


def test_cache_file_round_trip(tmp_path: Path, provider: ScriptedProvider) -> None:
    path = tmp_path / "dns-cache.json"
    provider.set("api.example", "10.0.0.1", ttl=5)
    with Resolver(providers=[provider], cache_file=path) as first:
        first.resolve("api.example")
    assert path.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["dns-cache.json"]  # no temp files left
    dark = ScriptedProvider()
    dark.fail("api.example", "timed out")
    time.sleep(0.01)
    with Resolver(providers=[dark], cache_file=path) as second:
        answer = second.resolve("api.example")  # within its TTL, but not confirmed yet
    assert answer.addresses == ("10.0.0.1",)
    assert answer.stale
    assert "cache file" in answer.source


def test_the_cache_file_is_written_in_the_background(
    tmp_path: Path, provider: ScriptedProvider
) -> None:
    path = tmp_path / "dns-cache.json"
    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_file=path) as resolver:
        resolver.resolve("api.example")
        wait_until(path.exists, timeout=5)
        assert "10.0.0.1" in path.read_text()


@pytest.mark.parametrize(
    "content",
    [
        b'{"format":"outlast-dns-cache","version":1,"names":[{"host":"a',
        b'{"version":1,"written_at":1,"names":{"host":"a"}}',
    ],
)
def test_a_corrupt_cache_file_is_ignored_with_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dns-cache.json"
    path.write_bytes(content)
    provider = ScriptedProvider()
    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_file=path) as resolver:
        assert resolver.resolve("api.example").addresses == ("10.0.0.1",)
    assert "dns.cache_file_failed" in caplog.text
    assert "10.0.0.1" in path.read_text()  # replaced by a good file at close


def test_an_unreadable_cache_file_is_reported_and_left_alone(
    tmp_path: Path, provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_file=blocker / "cache.json") as resolver:
        assert resolver.resolve("api.example").addresses == ("10.0.0.1",)
    assert "cannot read" in caplog.text
    assert blocker.read_text() == "not a directory"


def test_a_cache_file_that_cannot_be_written_breaks_nothing(
    tmp_path: Path, provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "state"
    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_file=folder / "cache.json") as resolver:
        folder.write_text("the folder became a file")  # the path can no longer be written
        assert resolver.resolve("api.example").addresses == ("10.0.0.1",)
    assert "cannot write" in caplog.text


def test_a_cache_file_of_another_version_is_never_overwritten(
    tmp_path: Path, provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.json"
    future = '{"format":"outlast-dns-cache","version":2,"names":[]}'
    path.write_text(future)
    provider.set("api.example", "10.0.0.1")
    with Resolver(providers=[provider], cache_file=path) as resolver:
        resolver.resolve("api.example")
    assert path.read_text() == future
    assert "it is left as it is" in caplog.text


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_resolves_and_refreshes(
    resolver: Resolver, provider: ScriptedProvider, clock: ManualClock
) -> None:
    import os
    import signal

    provider.set("api.example", "10.0.0.1", ttl=10)
    resolver.resolve("api.example")  # the parent's background thread is running now
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            signal.alarm(20)
            provider.set("api.example", "10.0.0.2", ttl=10)
            provider.set("cold.example", "10.0.0.3")
            clock.advance(11)
            assert resolver.resolve("api.example").stale  # inherited LKG, refresh started
            settle(resolver)
            assert resolver.resolve("api.example").addresses == ("10.0.0.2",)
            assert resolver.resolve("cold.example").addresses == ("10.0.0.3",)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert resolver.resolve("api.example").addresses == ("10.0.0.1",)  # the parent is unaffected


def test_the_system_providers_negative_answers_are_capped_by_negative_ttl(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # getaddrinfo's errors mapped to outcomes; no socket is needed to prove the mapping
    # (and the tests never ask the machine's resolver about names beyond /etc/hosts).
    import socket

    from outlast.dns import Failure, Negative
    from outlast.dns._providers import SystemProvider

    def failing(code: int) -> Callable[..., object]:
        def getaddrinfo(*args: object, **kwargs: object) -> object:
            raise socket.gaierror(code, "scripted")

        return getaddrinfo

    async def lookup(code: int) -> object:
        monkeypatch.setattr(socket, "getaddrinfo", failing(code))
        provider = SystemProvider()
        try:
            return await provider.lookup("gone.example", 1.0)
        finally:
            await provider.aclose()

    nxdomain = asyncio.run(lookup(socket.EAI_NONAME))
    assert isinstance(nxdomain, Negative)
    assert nxdomain.kind == "NXDOMAIN"
    assert nxdomain.ttl == float("inf")  # the table caps it at OUTLAST_DNS_NEGATIVE_TTL
    again = asyncio.run(lookup(socket.EAI_AGAIN))
    assert isinstance(again, Failure)


def test_the_only_provider_is_never_ejected(
    provider: ScriptedProvider, clock: ManualClock, events: list[Event]
) -> None:
    provider.fail("api.example")
    with Resolver(providers=[provider], clock=clock, listeners=[events.append]) as resolver:
        for _ in range(5):
            with pytest.raises(ResolveError):
                resolver.resolve("api.example")
    assert provider.calls["api.example"] == 5
    assert not [e for e in events if e.kind == "dns.provider_ejected"]


def test_ejection_grows_while_a_provider_keeps_failing(
    clock: ManualClock, events: list[Event]
) -> None:
    from outlast.dns import ProviderEjected

    bad, good = ScriptedProvider("bad"), ScriptedProvider("good")
    with Resolver(
        providers=[bad, good], clock=clock, hedge_delay=0, listeners=[events.append]
    ) as resolver:
        for i in range(40):
            bad.fail(f"n{i}.example")
            good.set(f"n{i}.example", "10.0.0.1")
            resolver.resolve(f"n{i}.example")
            clock.advance(1)
    ejections = [e.seconds for e in events if isinstance(e, ProviderEjected)]
    assert ejections[:3] == [5, 10, 20]
    assert all(e.provider == "bad" for e in events if isinstance(e, ProviderEjected))


def test_the_cache_file_is_written_at_most_every_few_seconds(
    tmp_path: Path, provider: ScriptedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outlast.dns import _resolver

    writes: list[float] = []
    real_save = _resolver.save

    def counting_save(*args: object, **kwargs: object) -> None:
        writes.append(time.monotonic())
        real_save(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_resolver, "save", counting_save)
    path = tmp_path / "cache.json"
    with Resolver(providers=[provider], cache_file=path) as resolver:
        started = time.monotonic()
        while time.monotonic() - started < 3:
            name = f"n{len(writes)}-{time.monotonic_ns()}.example"
            provider.set(name, "10.0.0.1")
            resolver.resolve(name)
            time.sleep(0.05)
        during = list(writes)
    assert 1 <= len(during) <= 3  # 60 new names in 3 s, one write per 2 s at most
    gaps = [b - a for a, b in itertools.pairwise(during)]
    assert all(gap >= _resolver.CACHE_FILE_INTERVAL * 0.9 for gap in gaps)
    assert len(writes) == len(during) + 1  # and once more at close


def test_cache_file_entries_older_than_their_stale_ttl_are_dropped_at_load(
    tmp_path: Path,
) -> None:
    import json

    path = tmp_path / "cache.json"
    now = time.time()
    names = [
        {"host": "old.example", "addresses": ["10.0.0.1"], "ttl": 60, "learned_at": now - 1000},
        {"host": "recent.example", "addresses": ["10.0.0.2"], "ttl": 60, "learned_at": now - 500},
    ]
    path.write_text(json.dumps({"version": 1, "written_at": now, "names": names}))
    dark = ScriptedProvider()
    dark.fail("old.example")
    dark.fail("recent.example")
    with Resolver(providers=[dark], cache_file=path, stale_ttl=600) as resolver:
        assert resolver.resolve("recent.example").addresses == ("10.0.0.2",)
        with pytest.raises(ResolveError):
            resolver.resolve("old.example")  # 940 s past expiry; stale_ttl is 600


def test_closing_during_a_lookup_raises_a_resolve_error(provider: ScriptedProvider) -> None:
    provider.set("slow.example", "10.0.0.1")
    provider.delay = 1.0
    resolver = Resolver(providers=[provider])
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            resolver.resolve("slow.example")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    time.sleep(0.2)
    resolver.close()
    thread.join(5)
    assert len(errors) == 1
    assert isinstance(errors[0], ResolveError)
    assert "closed during the lookup" in str(errors[0])


def test_closing_during_an_async_lookup_raises_a_resolve_error(
    provider: ScriptedProvider,
) -> None:
    provider.set("slow.example", "10.0.0.1")
    provider.delay = 1.0
    resolver = Resolver(providers=[provider])

    async def main() -> None:
        lookup = asyncio.ensure_future(resolver.aresolve("slow.example"))
        await asyncio.sleep(0.2)
        await asyncio.get_running_loop().run_in_executor(None, resolver.close)
        with pytest.raises(ResolveError, match="closed during the lookup"):
            await lookup

    asyncio.run(main())


def test_a_listener_that_resolves_a_cold_name_fails_fast_instead_of_stalling(
    provider: ScriptedProvider,
) -> None:
    provider.set("a.example", "10.0.0.1")
    provider.set("b.example", "10.0.0.2")
    seen: list[tuple[str, float]] = []
    resolver: Resolver

    def listener(event: Event) -> None:
        if event.kind == "dns.answer_updated" and not seen:
            started = time.monotonic()
            try:
                resolver.resolve("b.example")
                seen.append(("answered", time.monotonic() - started))
            except ResolveError as exc:
                seen.append((str(exc), time.monotonic() - started))

    with Resolver(providers=[provider], listeners=[listener]) as resolver:
        started = time.monotonic()
        assert resolver.resolve("a.example").addresses == ("10.0.0.1",)
        assert time.monotonic() - started < 1.0
    assert "own thread" in seen[0][0]
    assert seen[0][1] < 0.5


def test_a_provider_that_refuses_connections_fails_at_once() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens
    with Resolver(providers=[f"tcp://127.0.0.1:{port}"], timeout=2.0) as resolver:
        started = time.monotonic()
        with pytest.raises(ResolveError, match="ConnectionRefusedError"):
            resolver.resolve("api.example")
        assert time.monotonic() - started < 1.0  # a refusal is not a timeout


def test_unhashable_hosts_are_refused_clearly(resolver: Resolver) -> None:
    from outlast import InvalidHostError

    with pytest.raises(InvalidHostError, match="expected a hostname string, got list"):
        resolver.resolve(["api.example"])  # type: ignore[arg-type]


def test_bad_static_and_provider_arguments_are_config_errors() -> None:
    from outlast import ConfigError

    with pytest.raises(ConfigError, match=r"static=.*'nope' does not appear to be an IP"):
        Resolver(static={"db.example": ["nope"]})
    with pytest.raises(ConfigError, match=r"providers=123 is invalid: expected an OUTLAST"):
        Resolver(providers=[123])  # type: ignore[list-item]


def test_async_close_runs_off_the_event_loop(provider: ScriptedProvider) -> None:
    provider.set("api.example", "10.0.0.1")
    closed_on: list[str] = []

    class Watched(Resolver):
        def close(self) -> None:
            closed_on.append(threading.current_thread().name)
            super().close()

    async def main() -> None:
        async with Watched(providers=[provider]) as resolver:
            assert (await resolver.aresolve("api.example")).addresses == ("10.0.0.1",)
        with pytest.raises(ResolveError, match="closed"):
            await resolver.aresolve("other.example")

    asyncio.run(main())
    assert closed_on
    assert closed_on[0] != threading.main_thread().name  # not on the loop's thread
