"""A caller refused by an open breaker near its reset waits for the probe's verdict.

The breaker must never cost availability: a caller arriving while the open interval
has little left (within ``CircuitBreaker.max_wait`` and half the caller's deadline)
gets the healed destination's answer, not ``CircuitOpenError``. A failed probe refuses
the waiters; no waiter waits past its deadline. Sync and async (asyncio and trio).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Callable

import anyio
import pytest

from outlast import CircuitOpenError
from outlast._events import Emitter
from outlast.policy import CircuitBreaker, Policy, Retry, set_testing
from outlast.policy._breaker import BreakerState
from outlast.policy._events import LOGGER

from .helpers import FakeClock

#: Generous bounds for waits timed on the real clock (the suite runs on a busy machine).
SLACK = 1.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make(clock: Callable[[], float] | FakeClock, **breaker: object) -> Policy:
    # Real-clock tests about the verdict (not about max_wait's bound) pass max_wait=5.0:
    # a waiter must still be waiting when the probe settles, however busy the machine.
    """No retries, no budget: a breaker that opens on the first failure, reset 0.2 s."""
    breaker.setdefault("failures", 1)
    breaker.setdefault("reset", 0.2)
    breaker.setdefault("min_reset", breaker["reset"])
    kw: dict[str, object] = {}
    if isinstance(clock, FakeClock):
        kw = {"sleep": clock.sleep, "asleep": clock.asleep}
    return Policy(
        retry=None,
        budget=None,
        breaker=CircuitBreaker(**breaker),  # type: ignore[arg-type]
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )


def boom() -> None:
    raise ConnectionError("down")


def trip(policy: Policy) -> None:
    with pytest.raises(ConnectionError):
        policy.call(boom)
    assert policy.state == "open"


# -- the open interval's end is near: wait for it, probe, get the answer ----------------


def test_a_caller_near_the_reset_gets_the_healed_answer(clock: FakeClock) -> None:
    policy = make(clock)
    trip(policy)
    clock.advance(0.15)  # 0.05 s left of the open interval
    assert policy.call(lambda: "healed") == "healed"
    assert clock.slept == [pytest.approx(0.05, abs=1e-5)]  # it slept to the end, then probed
    assert policy.state == "closed"


@pytest.mark.anyio
async def test_an_async_caller_near_the_reset_gets_the_healed_answer(clock: FakeClock) -> None:
    policy = make(clock)
    trip(policy)
    clock.advance(0.15)

    async def healed() -> str:
        return "healed"

    assert await policy.acall(healed) == "healed"
    assert clock.slept == [pytest.approx(0.05, abs=1e-5)]
    assert policy.state == "closed"


def test_a_caller_near_the_reset_of_a_still_failing_destination_gets_its_error(
    clock: FakeClock,
) -> None:
    policy = make(clock)
    trip(policy)
    clock.advance(0.15)
    with pytest.raises(ConnectionError):  # it was the probe: the destination's own error
        policy.call(boom)
    assert policy.state == "open"
    with pytest.raises(CircuitOpenError):  # the next opening is 0.2 s again: no wait
        policy.within(0.3).call(lambda: "never")


def test_too_far_from_the_reset_still_fails_fast(clock: FakeClock) -> None:
    policy = make(clock, reset=1.0, min_reset=1.0)  # max_wait 0.25 < 1.0 left
    trip(policy)
    with pytest.raises(CircuitOpenError) as info:
        policy.call(lambda: "never")
    assert info.value.retry_after == pytest.approx(1.0)
    assert clock.slept == []


def test_max_wait_zero_and_testing_mode_fail_fast(clock: FakeClock) -> None:
    policy = make(clock, max_wait=0)
    trip(policy)
    clock.advance(0.15)
    with pytest.raises(CircuitOpenError):
        policy.call(lambda: "never")
    policy = make(clock)
    trip(policy)
    clock.advance(0.15)
    set_testing(True)
    with pytest.raises(CircuitOpenError):
        policy.call(lambda: "never")
    assert clock.slept == []


def test_the_wait_is_bounded_by_half_the_callers_deadline(clock: FakeClock) -> None:
    policy = make(clock)
    trip(policy)
    clock.advance(0.1)  # 0.1 s left
    with pytest.raises(CircuitOpenError):
        policy.within(0.15).call(lambda: "never")  # may wait 0.075 s: not enough
    assert clock.slept == []
    assert policy.within(0.3).call(lambda: "ok") == "ok"  # may wait 0.15 s: enough
    assert clock.slept == [pytest.approx(0.1, abs=1e-5)]


def test_retry_deadline_bounds_the_wait_too(clock: FakeClock) -> None:
    policy = Policy(
        retry=Retry(attempts=1, deadline=0.15),
        budget=None,
        breaker=CircuitBreaker(failures=1, reset=0.2, min_reset=0.2),
        clock=clock,
        sleep=clock.sleep,
    )
    trip(policy)
    clock.advance(0.1)
    with pytest.raises(CircuitOpenError):
        policy.call(lambda: "never")  # may wait 0.075 s: not enough
    assert clock.slept == []
    clock.advance(0.05)  # 0.05 s left: enough
    assert policy.call(lambda: "ok") == "ok"
    assert clock.slept == [pytest.approx(0.05, abs=1e-5)]


def test_a_config_error_names_max_wait() -> None:
    with pytest.raises(Exception, match="max_wait"):
        CircuitBreaker(max_wait=-1)
    assert CircuitBreaker().max_wait == 0.25
    assert CircuitBreaker(max_wait=0).max_wait == 0.0


# -- another caller's probe is in flight: wait for its verdict ------------------------


class Probe:
    """A call that holds the probe slot until the test lets it end (ok or failing)."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()
        self.fail = False

    def __call__(self) -> str:
        self.inside.set()
        assert self.release.wait(30)
        if self.fail:
            raise ConnectionError("still down")
        return "probe ok"


def held_probe(policy: Policy) -> tuple[Probe, concurrent.futures.Future[object]]:
    """Start a probe on a thread (the breaker's reset must have passed); return it."""
    probe = Probe()
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(policy.call, probe)
    pool.shutdown(wait=False)
    assert probe.inside.wait(30)
    assert policy.state == "half-open"
    return probe, future


def settle_soon(probe: Probe, *, fail: bool, after: float = 0.05) -> threading.Timer:
    def settle() -> None:
        probe.fail = fail
        probe.release.set()

    timer = threading.Timer(after, settle)
    timer.start()
    return timer


def callers(policy: Policy, n: int) -> tuple[list[object], list[threading.Thread]]:
    """``n`` threads each calling through ``policy``, started: what each got, in order."""
    results: list[object] = []
    lock = threading.Lock()

    def caller() -> None:
        try:
            result: object = policy.call(lambda: "ok")
        except CircuitOpenError as exc:
            result = exc
        with lock:
            results.append(result)

    threads = [threading.Thread(target=caller) for _ in range(n)]
    for thread in threads:
        thread.start()
    return results, threads


def test_a_waiter_gets_the_answer_when_the_probe_succeeds() -> None:
    policy = make(time.monotonic, reset=0.05, max_wait=5.0)
    trip(policy)
    time.sleep(0.06)
    probe, first = held_probe(policy)
    settle_soon(probe, fail=False)
    began = time.monotonic()
    assert policy.call(lambda: "after the verdict") == "after the verdict"
    assert time.monotonic() - began < 0.25 + SLACK
    assert first.result(30) == "probe ok"
    assert policy.state == "closed"


def test_the_waiters_are_refused_when_the_probe_fails() -> None:
    policy = make(time.monotonic, reset=0.05, max_wait=5.0)
    trip(policy)
    time.sleep(0.06)
    probe, first = held_probe(policy)
    settle_soon(probe, fail=True, after=0.1)
    calls: list[int] = []
    began = time.monotonic()
    with pytest.raises(CircuitOpenError):
        policy.call(calls.append, 1)
    assert time.monotonic() - began >= 0.09  # refused at the verdict, not before
    assert calls == []
    with pytest.raises(ConnectionError):
        first.result(30)
    assert policy.state == "open"


def test_many_waiting_threads_all_get_the_verdict_and_one_probe_only() -> None:
    policy = make(time.monotonic, reset=0.05, max_waiters=16, max_wait=5.0)
    trip(policy)
    time.sleep(0.06)
    probe, first = held_probe(policy)
    results, threads = callers(policy, 16)
    time.sleep(0.02)
    assert results == []  # they wait, none probes
    probe.release.set()
    for thread in threads:
        thread.join(30)
    assert results == ["ok"] * 16
    assert first.result(30) == "probe ok"


def test_at_most_max_waiters_wait_the_others_are_refused_at_once() -> None:
    # A long outage must not hold a service's threads: past max_waiters, fail fast.
    policy = make(time.monotonic, reset=0.05, max_waiters=4, max_wait=5.0)
    trip(policy)
    time.sleep(0.06)
    probe, first = held_probe(policy)
    results, threads = callers(policy, 12)
    deadline = time.monotonic() + 30
    while len(results) < 8:  # the eight beyond the cap are refused without waiting
        assert time.monotonic() < deadline, results
        time.sleep(0.01)
    assert all(isinstance(r, CircuitOpenError) for r in results)
    probe.release.set()
    for thread in threads:
        thread.join(30)
    assert results[8:] == ["ok"] * 4  # the four that waited heard the verdict
    assert first.result(30) == "probe ok"


def test_max_waiters_is_checked() -> None:
    with pytest.raises(Exception, match="max_waiters"):
        CircuitBreaker(max_waiters=-1)
    with pytest.raises(Exception, match="max_waiters"):
        CircuitBreaker(max_waiters=True)  # type: ignore[arg-type]
    assert CircuitBreaker().max_waiters == 8


def test_a_waiter_never_waits_past_its_deadline() -> None:
    policy = make(time.monotonic, reset=0.05)
    trip(policy)
    time.sleep(0.06)
    probe, first = held_probe(policy)  # never settles while the waiter waits
    try:
        began = time.monotonic()
        with pytest.raises(CircuitOpenError):
            policy.within(0.2).call(lambda: "never")  # waits at most 0.1 s
        waited = time.monotonic() - began
        assert 0.09 <= waited < 0.1 + SLACK
        began = time.monotonic()
        with pytest.raises(CircuitOpenError):
            policy.call(lambda: "never")  # no deadline: max_wait (0.25 s) bounds it
        waited = time.monotonic() - began
        assert 0.24 <= waited < 0.25 + SLACK
    finally:
        probe.release.set()
    assert first.result(30) == "probe ok"


def test_a_freed_probe_slot_goes_to_a_waiter() -> None:
    policy = make(time.monotonic, reset=0.05, max_wait=5.0)
    trip(policy)
    time.sleep(0.06)
    state = policy._guard.breaker  # type: ignore[union-attr]
    assert state is not None
    token = state.allow()  # the probe, held here
    assert token
    threading.Timer(0.05, state.abandoned, (token,)).start()  # it ends without a verdict
    assert policy.call(lambda: "probed") == "probed"  # the waiter took the slot
    assert policy.state == "closed"


# -- async: asyncio and trio -------------------------------------------------------------


async def _async_verdict(fail: bool) -> tuple[object, object, list[int]]:
    policy = make(time.monotonic, reset=0.05, max_wait=5.0)
    trip(policy)
    await anyio.sleep(0.06)
    inside, release = anyio.Event(), anyio.Event()
    calls: list[int] = []
    results: dict[str, object] = {}

    async def probe() -> str:
        inside.set()
        await release.wait()
        if fail:
            raise ConnectionError("still down")
        return "probe ok"

    async def waiter() -> str:
        calls.append(1)
        return "after the verdict"

    async def run(name: str, fn: Callable[[], object]) -> None:
        try:
            results[name] = await policy.acall(fn)  # type: ignore[arg-type]
        except Exception as exc:
            results[name] = exc

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run, "probe", probe)
        await inside.wait()
        assert policy.state == "half-open"
        tasks.start_soon(run, "waiter", waiter)
        await anyio.sleep(0.05)
        assert "waiter" not in results  # waiting, not refused
        release.set()
    return results["probe"], results["waiter"], calls


@pytest.mark.anyio
async def test_an_async_waiter_gets_the_answer_when_the_probe_succeeds() -> None:
    probe, waiter, calls = await _async_verdict(fail=False)
    assert probe == "probe ok"
    assert waiter == "after the verdict"
    assert calls == [1]


@pytest.mark.anyio
async def test_async_waiters_are_refused_when_the_probe_fails() -> None:
    probe, waiter, calls = await _async_verdict(fail=True)
    assert isinstance(probe, ConnectionError)
    assert isinstance(waiter, CircuitOpenError)
    assert calls == []


@pytest.mark.anyio
async def test_an_async_waiter_never_waits_past_its_deadline() -> None:
    policy = make(time.monotonic, reset=0.05)
    trip(policy)
    await anyio.sleep(0.06)
    state = policy._guard.breaker  # type: ignore[union-attr]
    assert state is not None
    token = state.allow()  # the probe, held here and never settled while the waiter waits

    async def never() -> str:
        return "never"

    began = time.monotonic()
    with pytest.raises(CircuitOpenError):
        await policy.within(0.2).acall(never)
    assert 0.09 <= time.monotonic() - began < 0.1 + SLACK
    state.succeeded(token)


@pytest.mark.anyio
async def test_a_cancelled_async_waiter_holds_nothing() -> None:
    policy = make(time.monotonic, reset=0.05)
    trip(policy)
    await anyio.sleep(0.06)
    state = policy._guard.breaker  # type: ignore[union-attr]
    assert state is not None
    token = state.allow()

    async def never() -> str:
        return "never"

    with anyio.move_on_after(0.02):
        await policy.acall(never)
    state.succeeded(token)  # the verdict after the waiter left: nothing to wake, no error
    assert policy.state == "closed"
    assert await policy.acall(never) == "never"


# -- a breaker shared with a fleet: another process holds the probe -------------------


class Link:
    """A fleet link whose lease says another process probes for ``held`` seconds."""

    def __init__(self, held: float) -> None:
        self.held = held
        self.asked = 0

    def failed(self) -> None: ...

    def succeeded(self) -> None: ...

    def opened(self, *, probe: bool) -> None: ...

    def closed(self) -> None: ...

    def probe_wait(self) -> float:
        self.asked += 1
        return self.held


class Fleet:
    def __init__(self, link: Link) -> None:
        self.link_ = link
        self.apply: Callable[[str, float], None] | None = None

    def link(self, name: str, config: CircuitBreaker, apply: Callable[[str, float], None]) -> Link:
        self.apply = apply
        return self.link_


@pytest.mark.parametrize("verdict", ["closed", "open"])
def test_a_waiter_hears_the_fleets_verdict(verdict: str) -> None:
    fleet = Fleet(Link(held=5.0))
    config = CircuitBreaker(failures=1, reset=0.05, min_reset=0.05)
    state = BreakerState(config, "k", time.monotonic, Emitter(LOGGER), shared=fleet)
    state.failed(0)
    time.sleep(0.06)
    with pytest.raises(CircuitOpenError) as info:
        state.allow()  # the interval has passed, but another process holds the probe
    assert fleet.apply is not None
    threading.Timer(0.1, fleet.apply, (verdict, 0.0)).start()
    began = time.monotonic()
    if verdict == "closed":
        assert state.wait(info.value, 10.0, time.sleep) == 0  # let through, not a probe
    else:
        with pytest.raises(CircuitOpenError):
            state.wait(info.value, 10.0, time.sleep)
    assert 0.09 <= time.monotonic() - began < 0.25 + SLACK  # it waited for the verdict


# -- a fork while callers wait ---------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_callers_wait_can_wait_itself() -> None:
    """The parent's waiting threads do not exist in a forked child: their places among
    the ``max_waiters`` and the probe they wait for must not be inherited, or no caller
    in the child would ever wait again (and the child's breaker would stay half-open
    until ``probe_timeout``)."""
    policy = make(time.monotonic, reset=0.1, max_wait=5.0)
    trip(policy)
    time.sleep(0.11)
    probe, done = held_probe(policy)  # the parent's probe, in flight at the fork
    waiting = concurrent.futures.ThreadPoolExecutor(8)
    waiters = [waiting.submit(policy.call, lambda: "after") for _ in range(8)]
    state = policy._guard.breaker  # type: ignore[union-attr]
    assert state is not None
    deadline = time.monotonic() + 30
    while state._waiters < 8 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert state._waiters == 8
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: trip its breaker, then call near the reset
        code = 1
        try:
            assert state._waiters == 0
            # The parent's probe is not in flight here: this caller probes, and closes it.
            assert policy.call(lambda: "probe") == "probe"
            assert policy.state == "closed"
            trip(policy)
            time.sleep(0.05)  # 0.05 s of the 0.1 s interval left: this caller waits
            os.write(write, str(policy.call(lambda: "healed")).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read()
    _, status = os.waitpid(pid, 0)
    probe.release.set()
    assert done.result(30) == "probe ok"
    concurrent.futures.wait(waiters, 30)  # the verdict, or max_wait ran out: either
    waiting.shutdown()
    assert said == b"healed"
    assert os.waitstatus_to_exitcode(status) == 0


# -- a sync caller on an event loop's thread -------------------------------------------


@pytest.mark.anyio
async def test_a_sync_caller_on_an_event_loops_thread_does_not_wait() -> None:
    """A sync call made on the loop's own thread (a sync client inside async code) must
    not block the loop to wait: the probe it would wait for may be a task of this very
    loop, which cannot finish while the loop is blocked (before: the loop stood still
    for all of ``max_wait``, then the caller was refused anyway)."""
    policy = make(time.monotonic, reset=0.05, max_wait=0.5)
    trip(policy)
    await anyio.sleep(0.06)
    gate = anyio.Event()

    async def probe() -> str:
        await gate.wait()
        return "probe ok"

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(policy.acall, probe)  # the probe, in flight on this loop
        await anyio.sleep(0.01)
        assert policy.state == "half-open"
        began = time.monotonic()
        with pytest.raises(CircuitOpenError):
            policy.call(lambda: "sync")
        blocked = time.monotonic() - began
        gate.set()
    assert policy.state == "closed"
    assert blocked < 0.2  # refused at once, not after max_wait (0.5 s)
