"""CircuitBreaker(ratio=): opening on a failure ratio over a sliding window, on the fake clock."""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import Callable

import pytest

from outlast import ConfigError
from outlast._events import Emitter
from outlast.policy import CircuitBreaker, Policy, Retry, retry_on
from outlast.policy._breaker import BreakerState
from outlast.policy._events import LOGGER

from .helpers import FakeClock


def state_of(clock: FakeClock, **kw: object) -> BreakerState:
    kw.setdefault("failures", 1000)  # out of the way unless a test wants it
    kw.setdefault("reset", 5.0)
    config = CircuitBreaker(**kw)  # type: ignore[arg-type]
    return BreakerState(config, "k", clock, Emitter(LOGGER))


def counts(state: BreakerState) -> tuple[int, int]:
    assert state.window is not None
    return state.window.counts()


def breaker_of(policy: Policy) -> BreakerState:
    guard = policy._guard
    assert guard is not None
    assert guard.breaker is not None
    return guard.breaker


def boom() -> None:
    raise ConnectionError("down")


def policy_of(clock: FakeClock, **kw: object) -> Policy:
    kw.setdefault("retry", None)
    kw.setdefault("budget", None)
    return Policy(clock=clock, sleep=clock.sleep, asleep=clock.asleep, **kw)  # type: ignore[arg-type]


def test_opens_at_the_ratio_only_once_min_calls_have_finished(clock: FakeClock) -> None:
    state = state_of(clock, ratio=0.5, min_calls=10)
    state.failed(0)  # 1 of 1 unwell: far over the ratio, but one call is no evidence
    assert state.state == "closed"
    for _ in range(4):
        state.succeeded(0)
        state.failed(0)
    assert counts(state) == (9, 5)  # 5/9 over the ratio, still under min_calls
    assert state.state == "closed"
    state.succeeded(0)
    assert state.state == "closed"  # a success never opens it
    state.failed(0)  # 6 of 11
    assert state.state == "open"


def test_opens_exactly_at_min_calls_and_ratio(clock: FakeClock) -> None:
    state = state_of(clock, ratio=0.7, min_calls=10)
    for _ in range(3):
        state.succeeded(0)
    for _ in range(6):
        state.failed(0)
    assert state.state == "closed"
    state.failed(0)  # 7 of 10 is 0.7 (where 0.7 * 10 would be 7.000000000000001)
    assert state.state == "open"


def test_does_not_open_below_the_ratio(clock: FakeClock) -> None:
    state = state_of(clock, ratio=0.6, min_calls=10)
    for _ in range(500):  # 50% unwell, every call 0.1 s apart: always a full window
        clock.advance(0.1)
        state.succeeded(0)
        clock.advance(0.1)
        state.failed(0)
    assert state.state == "closed"
    calls, unwell = counts(state)
    assert 90 <= calls <= 100
    assert unwell == calls // 2


def test_old_calls_slide_out_of_the_window(clock: FakeClock) -> None:
    state = state_of(clock, ratio=0.5, min_calls=10, window=10.0)
    for _ in range(9):
        state.failed(0)
    clock.advance(9.0)  # buckets are a second wide: still inside the window
    assert counts(state) == (9, 9)
    clock.advance(1.0)  # ten buckets on: gone
    assert counts(state) == (0, 0)
    for _ in range(9):
        state.succeeded(0)
    state.failed(0)  # with the old failures it would be 10 of 19 and open
    assert counts(state) == (10, 1)
    assert state.state == "closed"


def test_a_window_given_as_a_timedelta_slides_on_its_own_buckets(clock: FakeClock) -> None:
    state = state_of(clock, ratio=0.5, min_calls=2, window=datetime.timedelta(seconds=1))
    state.failed(0)
    clock.advance(1.0)
    state.succeeded(0)
    state.succeeded(0)
    state.failed(0)  # 1 of 3 in the last second: the first failure has left
    assert state.state == "closed"
    state.failed(0)  # 2 of 4
    assert state.state == "open"


def test_consecutive_failures_still_open_it(clock: FakeClock) -> None:
    state = state_of(clock, failures=3, ratio=0.9, min_calls=100)
    state.failed(0)
    state.failed(0)
    state.succeeded(0)  # resets the consecutive count, not the window
    state.failed(0)
    state.failed(0)
    assert state.state == "closed"
    state.failed(0)
    assert state.state == "open"


def test_the_window_starts_afresh_when_the_breaker_opens_and_closes(clock: FakeClock) -> None:
    state = state_of(clock, ratio=0.5, min_calls=4)
    for _ in range(2):
        state.succeeded(0)
        state.failed(0)
    assert state.state == "open"
    assert counts(state) == (0, 0)
    state.succeeded(0)  # a call admitted before it opened, ending late
    clock.advance(5.0)
    probe = state.allow()
    assert probe
    state.succeeded(probe)
    assert state.state == "closed"
    assert counts(state) == (0, 0)  # neither the late call nor the probe is counted
    for _ in range(3):
        state.failed(0)  # 3 of 3, under min_calls: the window before it opened is gone
    assert state.state == "closed"


def test_while_pinned_closed_nothing_opens_it_and_the_counts_are_dropped(
    clock: FakeClock,
) -> None:
    state = state_of(clock, ratio=0.5, min_calls=2)
    state.force("closed")
    for _ in range(10):
        state.failed(0)
    state.succeeded(0)
    assert state.state == "closed"
    state.force(None)
    assert counts(state) == (0, 0)


def test_business_errors_count_as_successes(clock: FakeClock) -> None:
    policy = policy_of(
        clock,
        breaker=CircuitBreaker(failures=1000, ratio=0.5, min_calls=4),
        classify_error=retry_on(ConnectionError),
    )
    for _ in range(3):
        with pytest.raises(KeyError):
            policy.call(lambda: {}["x"])
    with pytest.raises(ConnectionError):
        policy.call(boom)
    assert policy.state == "closed"  # 1 of 4
    with pytest.raises(ConnectionError):
        policy.call(boom)
    assert policy.state == "closed"  # 2 of 5
    with pytest.raises(ConnectionError):
        policy.call(boom)
    assert policy.state == "open"  # 3 of 6


def test_cancellations_do_not_count(clock: FakeClock) -> None:
    policy = policy_of(clock, breaker=CircuitBreaker(failures=1000, ratio=0.5, min_calls=2))

    async def hang() -> None:
        await asyncio.Event().wait()

    async def fail() -> None:
        raise ConnectionError("down")

    async def main() -> None:
        for _ in range(5):
            task = asyncio.create_task(policy.acall(hang))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        with pytest.raises(ConnectionError):
            await policy.acall(fail)  # 1 of 1: the cancelled calls made no calls
        assert policy.state == "closed"
        with pytest.raises(ConnectionError):
            await policy.acall(fail)

    asyncio.run(main())
    assert policy.state == "open"


def test_the_success_path_without_a_ratio_builds_no_window(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reported: list[int] = []
    original = BreakerState.succeeded

    def spy(self: BreakerState, probe: int) -> None:
        reported.append(probe)
        original(self, probe)

    monkeypatch.setattr(BreakerState, "succeeded", spy)
    plain = policy_of(clock, breaker=CircuitBreaker(failures=3))
    for _ in range(10):
        assert plain.call(lambda: "ok") == "ok"
    assert reported == []  # as before: a success with nothing to reset reports nothing
    assert breaker_of(plain).window is None

    windowed = policy_of(clock, breaker=CircuitBreaker(failures=3, ratio=0.5))
    for _ in range(10):
        windowed.call(lambda: "ok")
    assert reported == [0] * 10
    assert counts(breaker_of(windowed)) == (10, 0)


def test_every_attempt_of_a_retried_call_counts(clock: FakeClock) -> None:
    policy = policy_of(
        clock,
        retry=Retry(attempts=3, base=0.01, cap=0.01),
        breaker=CircuitBreaker(failures=1000, ratio=0.5, min_calls=10),
    )
    attempts = [0]

    def flaky() -> str:
        attempts[0] += 1
        if attempts[0] % 3:
            raise ConnectionError("down")
        return "ok"

    for _ in range(3):
        assert policy.call(flaky) == "ok"  # two failures, then a success
    assert counts(breaker_of(policy)) == (9, 6)
    assert policy.state == "closed"
    with pytest.raises(ConnectionError):
        policy.call(boom)  # with retry=... it retries: the tenth attempt opens it
    assert policy.state == "open"


class FakeLink:
    def __init__(self) -> None:
        self.said: list[str] = []

    def failed(self) -> None:
        self.said.append("failed")

    def succeeded(self) -> None:
        self.said.append("succeeded")

    def opened(self, *, probe: bool) -> None:
        self.said.append(f"opened(probe={probe})")

    def closed(self) -> None:
        self.said.append("closed")


class FakeShared:
    def __init__(self) -> None:
        self.links: list[FakeLink] = []

    def link(
        self, name: str, config: CircuitBreaker, apply: Callable[[str, float], None]
    ) -> FakeLink:
        self.links.append(FakeLink())
        return self.links[-1]


def test_a_ratio_trip_is_reported_to_the_fleet_as_an_opening(clock: FakeClock) -> None:
    shared = FakeShared()
    config = CircuitBreaker(failures=1000, ratio=0.5, min_calls=4)
    state = BreakerState(config, "k", clock, Emitter(LOGGER), shared)
    state.failed(0)
    state.succeeded(0)
    state.succeeded(0)
    state.failed(0)
    assert state.state == "open"
    assert shared.links[0].said == ["failed", "succeeded", "opened(probe=False)"]


def test_a_fleet_opening_and_closing_start_the_window_afresh(clock: FakeClock) -> None:
    state = state_of(clock, ratio=0.5, min_calls=4)
    state.failed(0)
    state.succeeded(0)
    state.apply_shared("open", 0.0)
    state.apply_shared("closed", 0.0)
    assert counts(state) == (0, 0)


def test_threads_counting_successes_lose_none(clock: FakeClock) -> None:
    state = state_of(clock, ratio=0.5, min_calls=1, window=1e6)
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(2000):
            state.succeeded(0)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert counts(state) == (16_000, 0)


def test_ratio_settings_are_validated() -> None:
    for bad in (0, -0.1, 1.5, True, "half", float("nan")):
        with pytest.raises(ConfigError, match="ratio"):
            CircuitBreaker(ratio=bad)  # type: ignore[arg-type]
    for bad_calls in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="min_calls"):
            CircuitBreaker(ratio=0.5, min_calls=bad_calls)  # type: ignore[arg-type]
    for bad_window in (0, -1, float("inf"), "10"):
        with pytest.raises(ConfigError, match="window"):
            CircuitBreaker(ratio=0.5, window=bad_window)  # type: ignore[arg-type]
    config = CircuitBreaker(ratio=1, min_calls=5, window=datetime.timedelta(minutes=1))
    assert (config.ratio, config.min_calls, config.window) == (1.0, 5, 60.0)
    assert CircuitBreaker().ratio is None
    assert (CircuitBreaker().min_calls, CircuitBreaker().window) == (20, 10.0)
    with pytest.raises(TypeError):
        CircuitBreaker(5)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.ratio = 0.1  # type: ignore[misc]
