"""An integration's hot path (``Policy._gate`` / ``_accepted`` / ``_afollow``) is ``acall``.

outlast.aiohttp makes a call's first attempt itself when the breaker is closed and
hands only what needs a look to the policy. Whatever the outcomes, the clock and the
breaker's moods, a call made that way must end as ``acall`` ends it: the same result or
error, the same sleeps, and the same breaker and budget afterwards. Two policies built
alike, each on its own fake clock, are driven with the same script, one through each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hypothesis import given, settings
from hypothesis import strategies as st

import outlast
from outlast.policy import Decision, Outcome
from outlast.policy._classify import first_result

from .helpers import FakeClock


class Transient(Exception):
    """The destination failed: retried and counted."""


class Local(Exception):
    """Not the destination's doing: neutral."""


def on_error(outcome: Outcome, /) -> Decision:
    if isinstance(outcome.error, Local):
        return Decision.NEUTRAL
    return Decision.TRANSIENT


def on_result(outcome: Outcome, /) -> Decision:
    return {
        "503": Decision.TRANSIENT,
        "404": Decision.ACCEPT,
        "busy": Decision.NEUTRAL,
        "hint": Decision(retry=True, unwell=False, delay=0.2),
    }.get(str(outcome.result), Decision.ACCEPT)


#: What one attempt does: returns a value (judged by ``on_result``) or raises.
ATTEMPTS = st.sampled_from(["ok", "404", "503", "busy", "hint", "transient", "local"])
#: A call: how long the clock moves before it, and its attempts' outcomes in order.
CALLS = st.tuples(
    st.sampled_from([0.0, 0.01, 0.3, 1.5]), st.lists(ATTEMPTS, min_size=1, max_size=4)
)


def _policy(clock: FakeClock) -> outlast.Policy:
    return outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.05, cap=0.5, deadline=2.0),
        budget=outlast.RetryBudget(ratio=0.2, floor=0.2, window=10),
        breaker=outlast.CircuitBreaker(failures=3, reset=0.5, min_reset=0.5, max_wait=0),
        classify_error=on_error,
        classify_result=on_result,
        clock=clock,
        asleep=clock.asleep,
        uniform=lambda low, high: high,
    )


def _scripted(outcomes: list[str], clock: FakeClock) -> Callable[[], Awaitable[str]]:
    left = list(outcomes)

    async def attempt() -> str:
        clock.advance(0.01)
        outcome = left.pop(0) if len(left) > 1 else left[0]
        if outcome == "transient":
            raise Transient(outcome)
        if outcome == "local":
            raise Local(outcome)
        return outcome

    return attempt


async def _hot(view: outlast.Policy, fn: Callable[[], Awaitable[str]]) -> str:
    """The hot path as outlast.aiohttp's middleware drives it."""
    started = view._gate()
    if started is None:
        return await view.acall(fn)
    try:
        result = await fn()
    except Exception as exc:
        return await view._afollow(started, Outcome(1, error=exc), fn)
    if result in ("ok", "404"):  # what its own classifier accepts without a look
        view._accepted()
        return result
    return await view._afollow(started, first_result(result), fn)


async def _through(view: outlast.Policy, fn: Callable[[], Awaitable[str]], hot: bool) -> str:
    return await (_hot(view, fn) if hot else view.acall(fn))


def _state(policy: outlast.Policy, clock: FakeClock) -> tuple[object, ...]:
    (key,) = [k for k in policy.snapshot().keys if k.key == "origin"]
    return (key.state, key.failures, key.calls, key.retries, tuple(clock.slept), clock.now)


@settings(max_examples=300, deadline=None)
@given(st.lists(CALLS, min_size=1, max_size=25))
def test_the_hot_path_ends_every_call_as_acall_does(script: list[tuple[float, list[str]]]) -> None:
    async def run(hot: bool) -> list[tuple[object, ...]]:
        clock = FakeClock()
        policy = _policy(clock)
        seen: list[tuple[object, ...]] = []
        for pause, outcomes in script:
            clock.advance(pause)
            view = policy.for_key("origin")
            try:
                ended: object = await _through(view, _scripted(outcomes, clock), hot)
            except Exception as exc:  # the attempt's own error, or CircuitOpenError
                ended = type(exc).__name__
            seen.append((ended, *_state(policy, clock)))
        return seen

    assert asyncio.run(run(hot=True)) == asyncio.run(run(hot=False))


def test_the_gate_counts_the_call_and_steps_aside_when_the_breaker_is_not_closed() -> None:
    clock = FakeClock()
    policy = _policy(clock)
    view = policy.for_key("origin")
    assert view._gate() == clock.now
    assert _state(policy, clock)[2] == 1  # counted in the budget
    view._force("open")
    assert view._gate() is None  # acall decides: refuse, wait or probe
    assert _state(policy, clock)[2] == 1  # and counts it there, once
    assert outlast.Policy(enabled=False).for_key("origin")._gate() is None
