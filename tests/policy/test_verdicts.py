"""The neutral verdict: an outcome that says nothing about the destination.

Not counted, does not reset the count, and a half-open probe that ends so is freed for
another caller instead of settling the breaker (either way).
"""

from __future__ import annotations

import pytest

import outlast
from outlast.policy import Decision, Outcome

from .helpers import FakeClock


class Local(Exception):
    """Stands for a pool timeout: the destination was never reached."""


class Remote(Exception):
    """Stands for a failure of the destination."""


def classify(outcome: Outcome, /) -> Decision:
    if isinstance(outcome.error, Local):
        return Decision.NEUTRAL
    if isinstance(outcome.error, Remote):
        return Decision(unwell=True)
    return Decision.ACCEPT


def raising(error: Exception) -> object:
    raise error


def policy(clock: FakeClock) -> outlast.Policy:
    return outlast.Policy(
        retry=None,
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=1.0),
        classify_error=classify,
        clock=clock,
    )


def test_a_neutral_outcome_does_not_reset_the_count(clock: FakeClock) -> None:
    p = policy(clock)
    with pytest.raises(Remote):
        p.call(raising, Remote())
    with pytest.raises(Local):
        p.call(raising, Local())
    assert p.state == "closed"
    with pytest.raises(Remote):
        p.call(raising, Remote())
    assert p.state == "open"


def test_a_neutral_result_does_not_reset_the_count(clock: FakeClock) -> None:
    def on_result(outcome: Outcome, /) -> Decision:
        return {"busy": Decision.NEUTRAL, "bad": Decision(unwell=True)}.get(
            str(outcome.result), Decision.ACCEPT
        )

    p = outlast.Policy(
        retry=None,
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=1.0),
        classify_result=on_result,
        clock=clock,
    )
    assert [p.call(lambda v=v: v) for v in ("bad", "busy", "bad")] == ["bad", "busy", "bad"]
    assert p.state == "open"


@pytest.mark.anyio
async def test_a_neutral_probe_is_freed_not_settled(clock: FakeClock) -> None:
    p = policy(clock)
    for _ in range(2):
        with pytest.raises(Remote):
            p.call(raising, Remote())
    clock.advance(1.0)
    with pytest.raises(Local):
        p.call(raising, Local())  # the probe: freed
    assert p.state == "half-open"

    async def local() -> None:
        raise Local

    with pytest.raises(Local):
        await p.acall(local)  # the freed slot: another probe, freed again
    assert p.state == "half-open"
    assert p.call(lambda: "ok") == "ok"  # a real probe settles it
    assert p.state == "closed"


@pytest.mark.anyio
async def test_the_async_face_retries_with_its_default_sleep_under_any_loop() -> None:
    # No injected sleep: the default (anyio.sleep) must work under asyncio and trio.
    p = outlast.Policy(retry=outlast.Retry(attempts=3, base=0.001, cap=0.01), budget=None)
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError
        return "ok"

    assert await p.acall(flaky) == "ok"
    assert len(calls) == 3


class ResetByPeer(Exception):
    """Stands for what a destination does: a transient failure."""


@pytest.mark.anyio
@pytest.mark.parametrize("bug", [TypeError, AttributeError, NameError, AssertionError])
async def test_the_default_classifier_neither_retries_nor_counts_a_programming_error(
    clock: FakeClock, bug: type[Exception]
) -> None:
    # Found by b2: calling a guarded function with a missing argument (the destination
    # never reached) was retried 3 times and opened its breaker in one call.
    calls = 0

    def guarded(required: object) -> object:
        nonlocal calls
        calls += 1
        raise bug("the caller's code is wrong")

    async def aguarded(required: object) -> object:
        return guarded(required)

    policy = outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.0),
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=5),
        clock=clock,
        sleep=clock.sleep,
    )
    for _ in range(3):
        with pytest.raises(TypeError):
            policy.call(guarded)  # a missing argument: the function never ran
        with pytest.raises(bug):
            policy.call(guarded, 1)
        with pytest.raises(bug):
            await policy.acall(aguarded, 1)
    assert calls == 6  # each call once: not retried
    failures = 0

    def flaky() -> str:
        nonlocal failures
        failures += 1
        if failures == 1:
            raise ResetByPeer
        return "ok"

    assert policy.call(flaky) == "ok"  # the breaker is closed; a real failure is retried
