"""CircuitBreaker: opening, fail-fast, one probe, business errors, cancellation, events."""

from __future__ import annotations

import asyncio
import threading

import pytest

from outlast import CircuitOpenError, ConfigError
from outlast.policy import (
    BreakerStateChanged,
    CircuitBreaker,
    Policy,
    Retry,
    force_closed,
    force_open,
    retry_on,
)

from .helpers import FakeClock, Recorder


def make(clock: FakeClock, recorder: Recorder | None = None, **kw: object) -> Policy:
    kw.setdefault("retry", None)
    kw.setdefault("budget", None)
    kw.setdefault("breaker", CircuitBreaker(failures=3, reset=5.0))
    return Policy(
        clock=clock,
        sleep=clock.sleep,
        asleep=clock.asleep,
        listeners=[recorder] if recorder else [],
        **kw,  # type: ignore[arg-type]
    )


def boom() -> None:
    raise ConnectionError("down")


def trip(policy: Policy, times: int = 3) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            policy.call(boom)


def test_opens_after_consecutive_failures_and_fails_fast(clock: FakeClock) -> None:
    policy = make(clock)
    trip(policy, 2)
    assert policy.state == "closed"
    trip(policy, 1)
    assert policy.state == "open"
    calls = []
    clock.advance(2.0)
    with pytest.raises(CircuitOpenError) as info:
        policy.call(calls.append, 1)
    assert calls == []
    assert info.value.name == "default"
    assert info.value.retry_after == pytest.approx(3.0)


def test_a_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    policy = make(clock)
    trip(policy, 2)
    assert policy.call(lambda: "ok") == "ok"
    trip(policy, 2)
    assert policy.state == "closed"


def test_business_errors_do_not_count(clock: FakeClock) -> None:
    policy = make(clock, classify_error=retry_on(ConnectionError))
    for _ in range(10):
        with pytest.raises(KeyError):
            policy.call(lambda: {}["x"])
    assert policy.state == "closed"


def test_after_reset_one_probe_success_closes(clock: FakeClock, recorder: Recorder) -> None:
    policy = make(clock, recorder)
    trip(policy)
    clock.advance(5.0)
    assert policy.call(lambda: "probe") == "probe"
    assert policy.state == "closed"
    changes = [(e.old, e.new) for e in recorder.of(BreakerStateChanged)]  # type: ignore[attr-defined]
    assert changes == [
        (None, "closed"),
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


def test_a_failed_probe_reopens_for_another_reset(clock: FakeClock) -> None:
    policy = make(clock)
    trip(policy)
    clock.advance(5.0)
    with pytest.raises(ConnectionError):
        policy.call(boom)
    assert policy.state == "open"
    clock.advance(4.0)
    with pytest.raises(CircuitOpenError) as info:
        policy.call(lambda: None)
    assert info.value.retry_after == pytest.approx(1.0)


def test_exactly_one_probe_under_thread_concurrency(clock: FakeClock) -> None:
    policy = make(clock)
    trip(policy)
    clock.advance(5.0)
    entered: list[int] = []
    release = threading.Event()
    start = threading.Barrier(8)
    refused: list[CircuitOpenError] = []

    def probe(i: int) -> int:
        entered.append(i)
        assert release.wait(5)
        return i

    def worker(i: int) -> None:
        start.wait()
        try:
            policy.call(probe, i)
        except CircuitOpenError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    while not entered and not all(not t.is_alive() for t in threads):
        threading.Event().wait(0.001)
    # Everyone but the probe has been refused while the probe is still inside the call.
    for _ in range(5000):
        if len(refused) == 7:
            break
        threading.Event().wait(0.001)
    assert len(entered) == 1
    assert len(refused) == 7
    assert policy.state == "half-open"
    release.set()
    for t in threads:
        t.join(5)
    assert policy.state == "closed"


def test_exactly_one_probe_among_asyncio_tasks(clock: FakeClock) -> None:
    policy = make(clock)
    trip(policy)
    clock.advance(5.0)

    async def main() -> tuple[int, int]:
        entered = []
        release = asyncio.Event()

        async def probe() -> str:
            entered.append(1)
            await release.wait()
            return "ok"

        async def one() -> str:
            try:
                return await policy.acall(probe)
            except CircuitOpenError:
                return "refused"

        tasks = [asyncio.create_task(one()) for _ in range(50)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*tasks)
        return len(entered), results.count("refused")

    assert asyncio.run(main()) == (1, 49)
    assert policy.state == "closed"


def test_an_awaited_coroutines_error_counts(clock: FakeClock) -> None:
    policy = make(clock)

    async def fail() -> None:
        await asyncio.sleep(0)
        raise ConnectionError

    async def main() -> None:
        for _ in range(3):
            with pytest.raises(ConnectionError):
                await policy.acall(fail)

    asyncio.run(main())
    assert policy.state == "open"


def test_cancellation_is_not_a_failure(clock: FakeClock) -> None:
    policy = make(clock, breaker=CircuitBreaker(failures=1, reset=5.0))

    async def hang() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        for _ in range(3):
            task = asyncio.create_task(policy.acall(hang))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert policy.state == "closed"


def test_a_cancelled_probe_frees_the_probe_slot(clock: FakeClock) -> None:
    policy = make(clock)
    trip(policy)
    clock.advance(5.0)

    async def hang() -> None:
        await asyncio.Event().wait()

    async def ok() -> str:
        return "ok"

    async def main() -> str:
        task = asyncio.create_task(policy.acall(hang))
        await asyncio.sleep(0)
        assert policy.state == "half-open"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await policy.acall(ok)

    assert asyncio.run(main()) == "ok"
    assert policy.state == "closed"


def test_a_probe_silent_for_a_whole_reset_is_presumed_lost(clock: FakeClock) -> None:
    policy = make(clock)
    trip(policy)
    clock.advance(5.0)
    inner: list[str] = []

    def stuck_probe() -> str:
        # while this probe is "hung", time passes and another caller comes
        with pytest.raises(CircuitOpenError):
            policy.call(lambda: "early")
        clock.advance(5.0)
        inner.append(policy.call(lambda: "second probe"))
        return "first"

    assert policy.call(stuck_probe) == "first"
    assert inner == ["second probe"]
    assert policy.state == "closed"


def test_retries_stop_when_the_breaker_opens(clock: FakeClock) -> None:
    policy = make(clock, retry=Retry(attempts=10, base=0.01, cap=0.01))
    calls = [0]

    def fail() -> None:
        calls[0] += 1
        raise ConnectionError(f"attempt {calls[0]}")

    with pytest.raises(ConnectionError, match="attempt 3"):
        policy.call(fail)
    assert calls == [3]
    assert policy.state == "open"


def test_keys_have_their_own_breakers(clock: FakeClock, recorder: Recorder) -> None:
    policy = make(clock, recorder)
    a, b = policy.for_key("https://a.example"), policy.for_key("https://b.example")
    trip(a)
    assert a.state == "open"
    assert b.state == "closed"
    assert policy.state == "closed"
    assert policy.for_key("https://a.example").state == "open"
    with pytest.raises(CircuitOpenError) as info:
        a.call(lambda: None)
    assert info.value.name == "https://a.example"
    keys = {e.key for e in recorder.of(BreakerStateChanged) if e.old is None}  # type: ignore[attr-defined]
    assert keys == {"default", "https://a.example", "https://b.example"}


def test_the_key_registry_is_bounded(clock: FakeClock) -> None:
    policy = make(clock, max_keys=2)
    trip(policy.for_key("a"))
    policy.for_key("b")
    policy.for_key("c")  # evicts "a"
    assert policy.for_key("a").state == "closed"


def test_forcing_a_breaker_open_and_closed(clock: FakeClock) -> None:
    policy = make(clock)
    with force_open(policy):
        clock.advance(60)
        with pytest.raises(CircuitOpenError):
            policy.call(lambda: None)
    assert policy.call(lambda: 1) == 1
    force_closed(policy)
    trip(policy, 10)
    assert policy.state == "closed"


def test_breaker_configuration_is_validated() -> None:
    with pytest.raises(ConfigError, match="failures"):
        CircuitBreaker(failures=0)
    with pytest.raises(ConfigError, match="reset"):
        CircuitBreaker(reset=0)
