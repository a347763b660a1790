"""CircuitBreaker: opening, fail-fast, one probe, business errors, cancellation, events."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Coroutine

import pytest

from outlast import CircuitOpenError, ConfigError
from outlast._events import Emitter
from outlast.policy import (
    BreakerStateChanged,
    CircuitBreaker,
    Decision,
    Outcome,
    Policy,
    Retry,
    RetryBudget,
    force_closed,
    force_open,
    retry_on,
)
from outlast.policy._breaker import BreakerState
from outlast.policy._events import LOGGER

from .helpers import FakeClock, Recorder


def make(clock: FakeClock, recorder: Recorder | None = None, **kw: object) -> Policy:
    kw.setdefault("retry", None)
    kw.setdefault("budget", None)
    # A fixed open interval (min_reset = reset): these tests time the reset exactly.
    kw.setdefault("breaker", CircuitBreaker(failures=3, reset=5.0, min_reset=5.0))
    kw.setdefault("sleep", clock.sleep)
    return Policy(
        clock=clock,
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
    # max_wait=0: the others fail fast (waiting for the verdict: test_breaker_wait.py).
    policy = make(clock, breaker=CircuitBreaker(failures=3, reset=5.0, min_reset=5.0, max_wait=0))
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


def test_a_probe_silent_for_a_whole_reset_is_not_yet_presumed_lost(clock: FakeClock) -> None:
    # This test used to assert that a second caller probed once the first probe had
    # been silent for one `reset`: two probes in flight at once, the bug it now guards.
    policy = make(
        clock, breaker=CircuitBreaker(failures=3, reset=5.0, min_reset=5.0, probe_timeout=30.0)
    )
    trip(policy)
    clock.advance(5.0)
    inner: list[str] = []

    def stuck_probe() -> str:
        # while this probe is "hung", time passes and other callers come
        clock.advance(5.0)
        with pytest.raises(CircuitOpenError) as info:
            policy.call(lambda: "second probe")
        assert info.value.retry_after == pytest.approx(5.0)
        clock.advance(20.0)  # 25 s in flight: still short of probe_timeout
        with pytest.raises(CircuitOpenError):
            policy.call(lambda: "second probe")
        clock.advance(5.0)  # 30 s: presumed lost, this caller probes instead
        inner.append(policy.call(lambda: "second probe"))
        return "first"

    assert policy.call(stuck_probe) == "first"
    assert inner == ["second probe"]
    assert policy.state == "closed"


def hang_forever() -> Callable[[str], Coroutine[None, None, None]]:
    inside: list[str] = []

    async def hang(tag: str) -> None:
        inside.append(tag)
        await asyncio.Event().wait()

    hang.inside = inside  # type: ignore[attr-defined]
    return hang


def test_the_reviewers_stale_probe_scenario_admits_one_probe_at_a_time(
    clock: FakeClock,
) -> None:
    """/tmp/rv/stale_probe.py: probe1 hangs past `reset`, probe2 comes, probe1 is cancelled,
    probe3 comes. Before the fix probe2 and probe3 were in flight together."""
    policy = make(clock, breaker=CircuitBreaker(failures=1, reset=5.0, max_wait=0))
    trip(policy, 1)
    clock.advance(5.0)
    hang = hang_forever()

    async def main() -> list[object]:
        t1 = asyncio.create_task(policy.acall(hang, "probe1"))
        await asyncio.sleep(0)
        clock.advance(5.0)  # probe1 silent for a whole reset
        t2 = asyncio.create_task(policy.acall(hang, "probe2"))
        await asyncio.sleep(0)
        t1.cancel()  # probe1 abandoned: the slot is free again
        await asyncio.gather(t1, return_exceptions=True)
        t3 = asyncio.create_task(policy.acall(hang, "probe3"))
        t4 = asyncio.create_task(policy.acall(hang, "probe4"))
        await asyncio.sleep(0)
        assert policy.state == "half-open"
        for task in (t2, t3, t4):  # ends whatever still hangs; keeps what already ended
            task.cancel()
        return await asyncio.gather(t2, t3, t4, return_exceptions=True)

    second, third, fourth = asyncio.run(main())
    assert isinstance(second, CircuitOpenError)
    assert isinstance(third, asyncio.CancelledError)  # the one probe in flight
    assert isinstance(fourth, CircuitOpenError)
    assert hang.inside == ["probe1", "probe3"]  # type: ignore[attr-defined]


def test_a_stale_probe_cannot_settle_the_probe_in_flight(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failures=1, reset=5.0, probe_timeout=10.0, max_wait=0)
    policy = make(clock, breaker=breaker)
    trip(policy, 1)
    clock.advance(5.0)
    hang = hang_forever()

    async def main() -> list[object]:
        t1 = asyncio.create_task(policy.acall(hang, "probe1"))
        await asyncio.sleep(0)
        clock.advance(10.0)  # probe1 presumed lost
        t2 = asyncio.create_task(policy.acall(hang, "probe2"))
        await asyncio.sleep(0)
        t1.cancel()  # the lost probe ends: it must not free probe2's slot
        await asyncio.gather(t1, return_exceptions=True)
        t3 = asyncio.create_task(policy.acall(hang, "probe3"))
        await asyncio.sleep(0)
        t2.cancel()
        t3.cancel()  # a no-op if it was refused, as it should have been
        return await asyncio.gather(t2, t3, return_exceptions=True)

    second, third = asyncio.run(main())
    assert isinstance(second, asyncio.CancelledError)
    assert isinstance(third, CircuitOpenError)
    assert hang.inside == ["probe1", "probe2"]  # type: ignore[attr-defined]


def test_a_stale_probe_reporting_late_counts_as_an_ordinary_call(clock: FakeClock) -> None:
    state = BreakerState(
        CircuitBreaker(failures=2, reset=5.0, probe_timeout=10.0), "k", clock, Emitter(LOGGER)
    )
    state.failed(0)
    state.failed(0)
    assert state.state == "open"
    clock.advance(5.0)
    first = state.allow()
    clock.advance(10.0)
    second = state.allow()
    assert 0 < first < second
    state.succeeded(first)  # late: neither closes the breaker nor frees the slot
    assert state.state == "half-open"
    with pytest.raises(CircuitOpenError):
        state.allow()
    state.failed(first)
    assert state.state == "half-open"
    state.succeeded(second)
    assert state.state == "closed"
    state.failed(first)  # a stale failure once closed counts like any other
    assert state.failures == 1


def race_breaker(clock: FakeClock) -> BreakerState:
    # Reset is tiny and probe_timeout huge: a probe is never presumed lost here, so at
    # no moment may two callers hold a probe token.
    return BreakerState(
        CircuitBreaker(failures=1, reset=0.001, probe_timeout=1e9), "race", clock, Emitter(LOGGER)
    )


def test_threads_racing_for_the_probe_never_hold_two(clock: FakeClock) -> None:
    state = race_breaker(clock)
    state.failed(0)
    lock = threading.Lock()
    holding = [0, 0]  # now, most ever
    probes = [0]
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(400):
            clock.advance(0.001)
            try:
                token = state.allow()
            except CircuitOpenError:
                continue
            if not token:
                state.failed(0)  # closed: trip it again so there is more to race for
                continue
            with lock:
                holding[0] += 1
                holding[1] = max(holding)
                probes[0] += 1
            time.sleep(0)
            with lock:
                holding[0] -= 1
            rng.choice((state.succeeded, state.failed, state.abandoned))(token)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert probes[0] > 10
    assert holding[1] == 1


def test_asyncio_tasks_racing_for_the_probe_never_hold_two(clock: FakeClock) -> None:
    state = race_breaker(clock)
    state.failed(0)
    holding = [0, 0]
    probes = [0]

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(200):
            clock.advance(0.001)
            await asyncio.sleep(0)
            try:
                token = state.allow()
            except CircuitOpenError:
                continue
            if not token:
                state.failed(0)
                continue
            holding[0] += 1
            holding[1] = max(holding)
            probes[0] += 1
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            holding[0] -= 1
            rng.choice((state.succeeded, state.failed, state.abandoned))(token)

    async def main() -> None:
        await asyncio.gather(*(worker(i) for i in range(50)))

    asyncio.run(main())
    assert probes[0] > 10
    assert holding[1] == 1


def test_probes_race_through_acall_one_per_round(clock: FakeClock) -> None:
    # max_wait=0: the others fail fast (waiting for the verdict: test_breaker_wait.py).
    policy = make(clock, breaker=CircuitBreaker(failures=1, reset=5.0, max_wait=0))
    trip(policy, 1)

    async def fail() -> None:
        raise ConnectionError("down")

    async def main() -> list[int]:
        entered_per_round = []
        for round_ in range(20):
            clock.advance(5.0)
            entered: list[int] = []
            gate = asyncio.Event()

            async def probe(
                i: int,
                entered: list[int] = entered,
                gate: asyncio.Event = gate,
                fails: bool = bool(round_ % 2),
            ) -> None:
                entered.append(i)
                await gate.wait()
                if fails:
                    raise ConnectionError("still down")

            tasks = [asyncio.create_task(policy.acall(probe, i)) for i in range(30)]
            for _ in range(3):
                await asyncio.sleep(0)
            gate.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            entered_per_round.append(len(entered))
            if policy.state == "closed":  # trip it again for the next round
                with pytest.raises(ConnectionError):
                    await policy.acall(fail)
        return entered_per_round

    assert asyncio.run(main()) == [1] * 20
    assert policy.state == "open"


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


def test_a_retry_stops_at_once_while_another_callers_probe_is_in_flight(
    clock: FakeClock,
) -> None:
    # Before: retry_after() said 0 while half-open, so the retry slept a whole backoff
    # and took a budget token, only to be refused by the breaker afterwards.
    policy = make(
        clock,
        retry=Retry(attempts=3, base=1.0, cap=1.0),
        budget=RetryBudget(ratio=0.0, floor=1.0, window=10.0),
        breaker=CircuitBreaker(failures=1, reset=5.0),
        uniform=lambda low, high: high,
    )
    hang = hang_forever()

    async def main() -> None:
        failing_now = asyncio.Event()

        async def slow_failure() -> None:
            await failing_now.wait()
            raise ConnectionError("slow")

        async def fail() -> None:
            raise ConnectionError("fast")

        slow = asyncio.create_task(policy.acall(slow_failure))  # admitted while closed
        await asyncio.sleep(0)
        with pytest.raises(ConnectionError, match="fast"):
            await policy.acall(fail)  # opens the breaker: no retry either
        clock.advance(5.0)
        probe = asyncio.create_task(policy.acall(hang, "probe"))
        await asyncio.sleep(0)
        assert policy.state == "half-open"
        failing_now.set()
        with pytest.raises(ConnectionError, match="slow"):
            await slow
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)

    asyncio.run(main())
    assert clock.slept == []
    assert policy.budget_counts() == (3, 0)


def test_a_retry_the_breaker_refuses_after_the_wait_takes_no_budget(clock: FakeClock) -> None:
    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        trip(policy, 1)  # meanwhile another caller opens the breaker

    def classify(outcome: Outcome) -> Decision:
        if isinstance(outcome.error, TimeoutError):
            return Decision.TRANSIENT
        return Decision(unwell=True)  # counted, never retried

    policy = make(
        clock,
        retry=Retry(attempts=3, base=1.0, cap=1.0),
        budget=RetryBudget(ratio=0.0, floor=1.0, window=10.0),
        breaker=CircuitBreaker(failures=2, reset=5.0),
        classify_error=classify,
        sleep=sleep,
    )
    calls = [0]

    def slow() -> None:
        calls[0] += 1
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError):
        policy.call(slow)
    assert calls == [1]
    assert len(clock.slept) == 1
    assert policy.state == "open"
    assert policy.budget_counts() == (2, 0)


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


def test_the_policys_name_is_its_own_key(clock: FakeClock, recorder: Recorder) -> None:
    # Before: Policy(name="api") and for_key("api") were two breakers.
    policy = make(clock, recorder, name="api", max_keys=1)
    with force_open(policy):
        assert policy.state == "open"
        assert policy.for_key("api").state == "open"
    trip(policy.for_key("api"))
    assert policy.state == "open"
    policy.for_key("b")
    policy.for_key("c")  # fills the registry twice over: the policy's own key stays
    assert policy.for_key("api").state == "open"
    assert policy.for_key("api").key == "api"
    keys = [e.key for e in recorder.of(BreakerStateChanged) if e.old is None]  # type: ignore[attr-defined]
    assert keys == ["api", "b", "c"]


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
        with pytest.raises(CircuitOpenError) as info:
            policy.call(lambda: None)
    # Not "the next probe is allowed in 5.00s": no probe comes until the pin is released.
    assert "forced open" in str(info.value)
    assert "probe is allowed" not in str(info.value)
    assert (info.value.name, info.value.retry_after) == ("default", 5.0)
    assert policy.call(lambda: 1) == 1
    force_closed(policy)
    trip(policy, 10)
    assert policy.state == "closed"


def test_breaker_configuration_is_validated() -> None:
    with pytest.raises(ConfigError, match="failures"):
        CircuitBreaker(failures=0)
    with pytest.raises(ConfigError, match="reset"):
        CircuitBreaker(reset=0)
    with pytest.raises(ConfigError, match=r"probe_timeout=4 .*at least reset \(5\)"):
        CircuitBreaker(reset=5, probe_timeout=4)
    assert CircuitBreaker(reset=5).probe_timeout == 60.0
    assert CircuitBreaker(reset=45).probe_timeout == 90.0


def test_the_open_interval_starts_short_and_doubles_while_probes_fail(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failures=3, reset=1.0, min_reset=0.1, max_wait=0)  # no waiting
    policy = make(clock, breaker=breaker)
    trip(policy)
    waits = []
    for _ in range(6):
        with pytest.raises(CircuitOpenError) as info:
            policy.call(lambda: None)
        waits.append(round(info.value.retry_after, 6))
        clock.advance(info.value.retry_after)
        with pytest.raises(ConnectionError):
            policy.call(boom)  # the probe fails: open again, for longer
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    clock.advance(1.0)
    assert policy.call(lambda: "ok") == "ok"  # the destination healed: the probe closes it
    trip(policy)
    with pytest.raises(CircuitOpenError) as info:
        policy.call(lambda: None)
    assert info.value.retry_after == pytest.approx(0.1)  # afresh after closing


def test_min_reset_defaults_short_and_may_not_exceed_reset() -> None:
    assert CircuitBreaker().min_reset == 0.05
    assert CircuitBreaker(reset=0.01).min_reset == 0.01
    with pytest.raises(ConfigError):
        CircuitBreaker(reset=1.0, min_reset=2.0)


def test_pybreaker_reads_the_plain_state_and_count_outlast_keeps(clock: FakeClock) -> None:
    """outlast's storage keeps ``state`` and ``counter`` as plain attributes (read on
    every call) where pybreaker has properties: pybreaker must see the same values
    through its own API at every step, or its state machine and outlast's would part."""
    breaker = BreakerState(
        CircuitBreaker(failures=3, reset=1.0, min_reset=1.0), "k", clock, Emitter(LOGGER)
    )
    pb = breaker._pb
    seen = []
    for _ in range(3):
        breaker.allow()
        breaker.failed(0)
        seen.append((pb.current_state, pb.fail_counter, breaker.state, breaker.failures))
    clock.advance(1.0)
    probe = breaker.allow()
    seen.append((pb.current_state, pb.fail_counter, breaker.state, breaker.failures))
    breaker.succeeded(probe)
    seen.append((pb.current_state, pb.fail_counter, breaker.state, breaker.failures))
    assert seen == [
        ("closed", 1, "closed", 1),
        ("closed", 2, "closed", 2),
        ("open", 3, "open", 3),
        ("half-open", 3, "half-open", 3),
        ("closed", 0, "closed", 0),
    ]
