"""RetryBudget: retries stay within ratio x calls + floor over the sliding window."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outlast import ConfigError
from outlast.policy import RetryBudget
from outlast.policy._budget import BudgetState

from .helpers import FakeClock


def test_ratio_of_calls_plus_the_floor(clock: FakeClock) -> None:
    state = BudgetState(RetryBudget(ratio=0.1, floor=0.2, window=10), clock)
    for _ in range(50):
        state.deposit(clock())
    # 0.1 * 50 + 0.2 * 10 = 7 retries
    assert [state.withdraw() for _ in range(8)] == [True] * 7 + [False]
    assert state.counts() == (50, 7)


def test_the_window_slides(clock: FakeClock) -> None:
    state = BudgetState(RetryBudget(ratio=0.5, floor=0.0, window=10), clock)
    for _ in range(4):
        state.deposit(clock())
    assert [state.withdraw() for _ in range(3)] == [True, True, False]
    clock.advance(10.0)
    # [t - 10, t] still holds the two retries; the calls' bucket is no longer wholly
    # inside it, so they no longer pay for retries.
    assert state.withdraw() is False
    assert state.counts() == (0, 2)
    clock.advance(1.0)  # now every bucket of the first second has expired
    assert state.counts() == (0, 0)
    state.deposit(clock())
    state.deposit(clock())
    assert state.withdraw() is True


def test_a_window_across_eleven_buckets_holds_the_bound(clock: FakeClock) -> None:
    """/tmp/rv/budget_window.py: retries at t=0.99 and t=10.0 lie in one 10 s window.
    Before the fix both bursts were admitted, 20 retries against a bound of 10."""
    clock.now = 0.99
    state = BudgetState(RetryBudget(ratio=0.0, floor=1.0, window=10.0), clock)
    admitted = 0
    while state.withdraw():
        admitted += 1
    assert admitted == 10
    clock.now = 10.0
    assert state.withdraw() is False
    clock.now = 11.0  # t=0.99 has left [t - 10, t]
    assert state.withdraw() is True


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigError, match="ratio"):
        RetryBudget(ratio=1.5)
    with pytest.raises(ConfigError, match="floor"):
        RetryBudget(floor=-1)
    with pytest.raises(ConfigError, match=r"floor=1000000.0 .*from 0 to below 1e6"):
        RetryBudget(floor=1e6)
    with pytest.raises(ConfigError, match="window"):
        RetryBudget(window=0)


def test_counting_is_thread_safe(clock: FakeClock) -> None:
    state = BudgetState(RetryBudget(ratio=0.5, floor=0.0, window=10), clock)

    def work() -> None:
        for _ in range(2000):
            state.deposit(clock())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def take() -> None:
        for _ in range(2000):
            state.withdraw()

    takers = [threading.Thread(target=take) for _ in range(8)]
    for t in takers:
        t.start()
    for t in takers:
        t.join()
    assert state.counts() == (16000, 8000)


events = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=2.5), st.booleans()), min_size=1, max_size=300
)


@settings(max_examples=200, deadline=None)
@given(
    steps=events,
    ratio=st.floats(min_value=0.0, max_value=1.0),
    floor=st.floats(min_value=0.0, max_value=2.0),
    window=st.floats(min_value=0.5, max_value=30.0),
    start=st.floats(min_value=0.0, max_value=100.0),
)
def test_retries_never_exceed_ratio_times_calls_plus_floor_in_any_window(
    steps: list[tuple[float, bool]], ratio: float, floor: float, window: float, start: float
) -> None:
    """For every retry admitted at time t, in the real window [t - window, t] (not one
    aligned to the budget's buckets): retries <= ratio x calls + floor x window.
    """
    clock = FakeClock(start=start)
    state = BudgetState(RetryBudget(ratio=ratio, floor=floor, window=window), clock)
    calls: list[float] = []
    retries: list[float] = []
    for dt, is_retry in steps:
        clock.advance(dt)
        if is_retry:
            if state.withdraw():
                retries.append(clock.now)
        else:
            state.deposit(clock.now)
            calls.append(clock.now)
    eps = 1e-9 * max(1.0, clock.now)  # bucket arithmetic in floating point
    for t in retries:
        recent = sum(1 for r in retries if t - window + eps <= r <= t)
        made = sum(1 for c in calls if t - window - eps <= c <= t)
        assert recent <= ratio * made + floor * window + 1e-9


def test_the_floor_is_capped_policy_wide_not_given_to_every_key() -> None:
    """100 quiet origins, each called once a second, every call failing: the retries
    stay near ``ratio`` of the calls, not ``ratio`` plus a floor per origin."""
    from outlast import Policy, Retry

    from .helpers import FakeClock

    clock = FakeClock()
    policy = Policy(
        retry=Retry(attempts=3, base=0.0, cap=0.0),
        budget=RetryBudget(),
        breaker=None,
        clock=clock,
        sleep=clock.sleep,
    )
    attempts = 0

    def fail() -> None:
        nonlocal attempts
        attempts += 1
        raise TimeoutError

    calls = 0
    for _second in range(60):
        for origin in range(100):
            calls += 1
            with pytest.raises(TimeoutError):
                policy.for_key(f"origin-{origin}").call(fail)
        clock.advance(1.0)
    assert attempts / calls <= 1.12  # the ratio (0.1) and one floor (1/s) for all of them


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=2.5),
            st.integers(min_value=0, max_value=2),
            st.sampled_from(["call", "retry", "refunded"]),
        ),
        min_size=1,
        max_size=300,
    ),
    ratio=st.floats(min_value=0.0, max_value=1.0),
    floor=st.floats(min_value=0.0, max_value=2.0),
    window=st.floats(min_value=0.5, max_value=30.0),
)
def test_keys_sharing_a_floor_pool_keep_both_bounds_through_refunds(
    steps: list[tuple[float, int, str]], ratio: float, floor: float, window: float
) -> None:
    """Three keys of one policy: each keeps its own bound, the retries only the floor
    paid for stay within one ``floor * window`` across all of them, and a token given
    back (a retry not made) counts for nothing."""
    from outlast.policy._budget import FloorPool

    clock = FakeClock()
    config = RetryBudget(ratio=ratio, floor=floor, window=window)
    pool = FloorPool(config)
    states = [BudgetState(config, clock, pool) for _ in range(3)]
    calls: list[list[float]] = [[], [], []]
    retries: list[list[float]] = [[], [], []]
    floored: list[float] = []
    for dt, key, op in steps:
        clock.advance(dt)
        if op == "call":
            states[key].deposit(clock.now)
            calls[key].append(clock.now)
            continue
        token = states[key].take()
        if token is None:
            continue
        if op == "refunded":
            states[key].refund(token)
            continue
        retries[key].append(clock.now)
        if token.floor:
            floored.append(clock.now)
    eps = 1e-9 * max(1.0, clock.now)
    for key in range(3):
        for t in retries[key]:
            recent = sum(1 for r in retries[key] if t - window + eps <= r <= t)
            made = sum(1 for c in calls[key] if t - window - eps <= c <= t)
            assert recent <= ratio * made + floor * window + 1e-9
    for t in floored:
        assert sum(1 for r in floored if t - window + eps <= r <= t) <= floor * window + 1e-9


def test_a_call_starting_a_new_bucket_never_wipes_a_retry_taken_in_it() -> None:
    """``deposit`` counts without the lock (it runs on every call) but starts a new
    bucket under it. Here another thread takes a retry at the worst moment: just after
    the depositing thread has marked the bucket new, before it has zeroed its counts.
    The retry must still be counted (wiped, the budget would overspend): the taker
    waits for the lock until the bucket is ready."""
    clock = FakeClock()
    state = BudgetState(RetryBudget(ratio=1.0, floor=0.0, window=10), clock)
    for _ in range(10):
        state.deposit(clock())
    clock.advance(1.0)  # the next bucket
    taken: list[bool] = []
    takers: list[threading.Thread] = []

    class Interleaved(list[int]):
        def __setitem__(self, index: Any, value: Any) -> None:
            super().__setitem__(index, value)
            if not takers:  # once: a retry taken from another thread, right now
                taker = threading.Thread(target=lambda: taken.append(state.withdraw()))
                takers.append(taker)
                taker.start()
                taker.join(0.2)  # it finishes now, unless the lock holds it back

    state._epochs = Interleaved(state._epochs)
    state.deposit(clock())
    takers[0].join(5)
    assert taken == [True]
    assert state.counts() == (11, 1)  # the retry is counted, and every call


def test_a_lock_free_count_never_carries_a_reused_buckets_old_calls() -> None:
    """A bucket's slot is reused a window later, still holding that bucket's calls.
    While one thread starts the new bucket (under the lock), another counts a call
    without it: it must never see the new epoch beside the old count, or it writes
    the old count plus one into the new bucket and the budget lets a single call's
    worth of traffic retry as if it were a thousand calls."""
    clock = FakeClock(0.5)
    state = BudgetState(RetryBudget(ratio=0.1, floor=0.0, window=10), clock)
    for _ in range(1000):  # a busy bucket, epoch 0
        state.deposit(clock())
    reused = 11.5  # epoch 11: the same slot as epoch 0
    main = threading.current_thread()
    marked, counted, started = threading.Event(), threading.Event(), threading.Event()
    counter: list[threading.Thread] = []

    class Epochs(list[int]):  # the starting thread pauses right after writing the epoch
        def __setitem__(self, index: Any, value: Any) -> None:
            super().__setitem__(index, value)
            if threading.current_thread() is main and value == 11:
                marked.set()
                counted.wait(1)  # until the other thread has read the count (or is locked out)

    class Calls(list[int]):  # the counting thread pauses right after reading the count
        def __getitem__(self, index: Any) -> Any:
            value = super().__getitem__(index)
            if counter and threading.current_thread() is counter[0]:
                counted.set()
                started.wait(1)
            return value

    state._epochs = Epochs(state._epochs)
    state._calls = Calls(state._calls)

    def count() -> None:
        marked.wait(5)
        state.deposit(reused)

    thread = threading.Thread(target=count)
    counter.append(thread)
    thread.start()
    clock.now = reused
    state.withdraw()  # starts the new bucket (the window holds no calls yet: refused)
    started.set()
    thread.join(5)
    assert state.counts() == (1, 0)  # one call in the window, not 1001
    assert not state.withdraw()  # 0.1 x 1 call: no retry
