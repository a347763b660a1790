"""The retries of one call, once its first attempt has failed: one engine, two thin faces.

The success path never comes here, nor does an attempt its classifier does not want
retried (:func:`judge`, :func:`tell` and :func:`replay` serve those). A :class:`Run` is
built when a first attempt failed and may be retried, or when the first attempt is a
half-open breaker's probe. Its :meth:`Run.steps` is the whole retry loop written once,
as a generator that does no I/O: it yields a :class:`Wait` when the caller should sleep
and an attempt number when the caller should call the function, and is sent back each
attempt's :class:`Outcome`. :meth:`Run.run` drives it with a blocking sleep and a
plain call, :meth:`Run.arun` with an awaited sleep (``anyio.sleep`` by default, so
asyncio and trio both) and an awaited call: a dozen lines each.

tenacity supplies the wait and stop math: the backoff's ceiling is
``wait_exponential(multiplier=base, max=cap)`` drawn from uniformly (full jitter, its
``wait_random_exponential`` with an injectable draw), and the stop rule is
``stop_after_attempt(attempts) | stop_before_delay(deadline)`` evaluated on a
``RetryCallState`` timed by the policy's own clock, whose upcoming sleep is the wait
plus as long as the last attempt took: a retry that could not finish by the deadline
is not started. An attempt that ended in a timeout says how long the caller was
willing to wait, not how long an attempt takes (the next one may well go to another
address): after one, the retry needs room for its wait only, and its own timeouts are
cut to what remains, so it still ends by the deadline. Around those, before each wait, the
loop also stops for a destination's hint longer than ``Retry.cap``, a breaker that is
not closed, and a spent budget.

The budget's token is taken before the wait, as the last check that may say no: a
caller is never made to wait for a retry the budget then refuses. After the wait the
breaker's gate is passed; if it refuses (it opened meanwhile) the token is given back
and the last outcome is returned. Whatever stops the loop (a refusal, cancellation, an
interrupt thrown in at a ``yield``), the generator's ``finally`` gives back a token not
spent and frees a probe slot not settled. The caller always gets the last attempt's own
error (or result), never a wrapper.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar

import tenacity

from outlast._async import on_event_loop
from outlast._events import Emitter
from outlast._exceptions import CircuitOpenError
from outlast.policy import _testing
from outlast.policy._breaker import CLOSED, BreakerState
from outlast.policy._budget import BudgetState, Token
from outlast.policy._classify import Classifier, Decision, Outcome
from outlast.policy._clock import AsyncSleep, Clock, Sleep
from outlast.policy._events import BudgetExhausted, RetryScheduled, describe_cause
from outlast.policy._retry import Retry, Uniform

__all__ = [
    "Guard",
    "Rules",
    "Run",
    "Wait",
    "aadmit",
    "admit",
    "judge",
    "patience",
    "replay",
    "tell",
]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Guard:
    """The live state of one key: its breaker and its budget (either may be absent)."""

    key: str
    breaker: BreakerState | None
    budget: BudgetState | None


@dataclasses.dataclass(frozen=True, slots=True)
class Rules:
    """What a policy's runs share: its configuration and its injected parts."""

    retry: Retry | None
    classify_error: Classifier
    classify_result: Classifier | None
    clock: Clock
    sleep: Sleep
    asleep: AsyncSleep
    uniform: Uniform
    emitter: Emitter


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """What :meth:`Run.steps` yields when the caller should sleep, before a retry."""

    seconds: float


#: What :meth:`Run.steps` yields: a wait, or the number of the attempt to make now.
Step = Wait | int


def judge(rules: Rules, outcome: Outcome) -> Decision:
    """What an attempt's outcome means, by the policy's classifiers."""
    if outcome.error is not None:
        return rules.classify_error(outcome)
    if rules.classify_result is not None:
        return rules.classify_result(outcome)
    return Decision.ACCEPT


def tell(breaker: BreakerState | None, decision: Decision, probe: int) -> None:
    """Tell the breaker (if any) what an attempt showed.

    A neutral outcome is not the destination's doing: not counted, the count is not
    reset, and a probe that ended so is freed for another caller rather than settled.
    """
    if breaker is not None:
        if decision.neutral:
            breaker.abandoned(probe)
        elif decision.unwell:
            breaker.failed(probe)
        else:
            breaker.succeeded(probe)


def admit(
    rules: Rules, refused: CircuitOpenError, breaker: BreakerState | None, limit: float | None
) -> tuple[int, float]:
    """After the breaker refused a call's first attempt: wait to be let through, or raise.

    A sync caller on an event loop's thread never waits (it would block the loop).
    Returns the breaker's token (see :meth:`BreakerState.allow`) and the time the call
    began, before the wait: the call's deadline counts the wait. See :func:`patience`.
    """
    started = rules.clock()
    wait = patience(rules, limit)
    # On an event loop's thread a blocking wait would stall the loop, and with it the
    # probe it waits for if that is one of the loop's own tasks: refused at once.
    if breaker is None or wait <= 0 or on_event_loop():
        raise refused
    return breaker.wait(refused, wait, rules.sleep), started


async def aadmit(
    rules: Rules, refused: CircuitOpenError, breaker: BreakerState | None, limit: float | None
) -> tuple[int, float]:
    """:func:`admit` for async callers (asyncio or trio)."""
    started = rules.clock()
    wait = patience(rules, limit)
    if breaker is None or wait <= 0:
        raise refused
    return await breaker.await_(refused, wait, rules.asleep), started


def patience(rules: Rules, limit: float | None) -> float:
    """How long a call refused by an open breaker may wait for it: half its deadline.

    The other half is left for the call itself (a probe given no time would fail for
    the caller's want of time, and reopen the breaker). The deadline is ``limit``
    (``Policy.within``) or ``Retry.deadline``, the tighter; none: unbounded here (the
    breaker caps every wait at ``CircuitBreaker.max_wait``). In testing mode: 0, no wait.
    """
    if _testing.current() is not None:
        return 0.0
    retry = rules.retry
    if retry is not None and retry.deadline is not None:
        limit = retry.deadline if limit is None else min(limit, retry.deadline)
    return math.inf if limit is None else limit / 2


def replay(outcome: Outcome) -> Any:
    """Repeat what an attempt produced, without calling anything: raise or return it."""
    error = outcome.error
    if error is not None:
        raise error
    return outcome.result


def _no_sleep(seconds: float) -> None:
    return None


async def _no_asleep(seconds: float) -> None:
    return None


class Run(Generic[T]):
    """One call's retry loop (see the module docstring). Built only off the success path.

    ``first`` is the first attempt's outcome, or None when the first attempt is yet to
    be made (a probe: ``probe`` is its token). ``decision`` is the classifier's verdict
    on ``first`` if the caller has already asked for it. ``limit`` is the call's own
    deadline in seconds from ``started`` (``Policy.within``); ``Retry.deadline`` applies
    too, the tighter winning.
    """

    __slots__ = ("_decision", "_first", "_guard", "_limit", "_probe", "_rules", "_started")

    def __init__(
        self,
        rules: Rules,
        guard: Guard,
        started: float,
        limit: float | None,
        first: Outcome | None,
        probe: int = 0,
        decision: Decision | None = None,
    ) -> None:
        self._rules = rules
        self._guard = guard
        self._started = started
        retry = rules.retry
        if retry is not None and retry.deadline is not None:
            limit = retry.deadline if limit is None else min(limit, retry.deadline)
        self._limit = limit
        self._first = first
        self._probe = probe
        self._decision = decision

    # -- the loop, once ----------------------------------------------------------------

    def _stop_rule(self) -> tenacity.stop.stop_base:
        retry = self._rules.retry
        attempts = 1 if retry is None else retry.attempts
        mode = _testing.current()
        if mode is not None and mode.attempts is not None:
            attempts = min(attempts, mode.attempts)
        rule: tenacity.stop.stop_base = tenacity.stop_after_attempt(attempts)
        if self._limit is not None:
            rule = rule | tenacity.stop_before_delay(self._limit)
        return rule

    def steps(self) -> Generator[Step, Outcome, Outcome]:
        """The retry loop: yields waits and attempt numbers, returns the last outcome."""
        rules, guard = self._rules, self._guard
        breaker, budget = guard.breaker, guard.budget
        probe = self._probe  # the token of the attempt in flight, if it is a probe
        token: Token | None = None  # the budget's token of the retry being waited for
        try:
            outcome = self._first
            if outcome is None:
                outcome = yield 1
            # How long the last attempt took: what the next one may be expected to take.
            took = _expected(outcome, rules.clock() - self._started)
            decision = self._decision if self._decision is not None else judge(rules, outcome)
            tell(breaker, decision, probe)
            probe = 0
            retry = rules.retry
            if retry is None or not decision.retry:
                return outcome
            stop = self._stop_rule()
            state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
            state.start_time = self._started
            while decision.retry:
                hint = decision.delay
                if hint is not None and hint > retry.cap:
                    break  # the destination asked for longer than this policy waits
                delay = retry.delay(outcome.attempt - 1, hint, rules.uniform)
                state.attempt_number = outcome.attempt
                state.outcome_timestamp = rules.clock()
                # The deadline must leave room for the wait and for an attempt as long
                # as the last one: a retry that cannot finish in time is not started.
                state.upcoming_sleep = delay + took
                if stop(state):
                    break  # attempts used up, or the retry could not finish by the deadline
                if breaker is not None and breaker.state != CLOSED:
                    # Open (or half-open, another caller's probe in flight): the retry
                    # would be refused, or would probe with a request already seen
                    # failing. Stop now, rather than wait out a backoff first.
                    break
                if budget is not None:
                    token = budget.take()  # before the wait: the last word on retrying
                    if token is None:
                        self._exhausted(outcome)
                        break
                rules.emitter.emit(
                    RetryScheduled(
                        key=guard.key, attempt=outcome.attempt, delay=delay, cause=_cause(outcome)
                    )
                )
                yield Wait(delay)
                if breaker is not None:
                    try:
                        probe = breaker.allow()
                    except CircuitOpenError:  # it opened during the wait
                        break  # (the token is given back below)
                token = None  # spent on this retry
                began = rules.clock()
                outcome = yield outcome.attempt + 1
                took = _expected(outcome, rules.clock() - began)
                decision = judge(rules, outcome)
                tell(breaker, decision, probe)
                probe = 0
            return outcome
        finally:
            if probe and breaker is not None:  # an attempt cut short: no verdict
                breaker.abandoned(probe)
            if token is not None and budget is not None:  # a retry not made after all
                budget.refund(token)

    def _exhausted(self, outcome: Outcome) -> None:
        self._rules.emitter.emit(
            BudgetExhausted(key=self._guard.key, attempt=outcome.attempt, cause=_cause(outcome))
        )

    # -- the two faces -----------------------------------------------------------------

    def run(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        """Drive :meth:`steps` with blocking sleeps and calls; return or raise the last outcome."""
        sleep = _no_sleep if _testing.current() is not None else self._rules.sleep
        steps = self.steps()
        try:
            step = next(steps)
            while True:
                if isinstance(step, Wait):
                    sleep(step.seconds)
                    step = next(steps)
                    continue
                try:
                    outcome = Outcome(step, result=fn(*args, **kwargs))
                except Exception as exc:
                    outcome = Outcome(step, error=exc)
                step = steps.send(outcome)
        except StopIteration as stop:
            last: Outcome = stop.value
        finally:
            steps.close()  # interrupted: the loop gives back what it holds
        result: T = replay(last)
        return result

    async def arun(self, fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> T:
        """Drive :meth:`steps` with awaited sleeps and calls; return or raise the last outcome."""
        asleep = _no_asleep if _testing.current() is not None else self._rules.asleep
        steps = self.steps()
        try:
            step = next(steps)
            while True:
                if isinstance(step, Wait):
                    await asleep(step.seconds)
                    step = next(steps)
                    continue
                try:
                    outcome = Outcome(step, result=await fn(*args, **kwargs))
                except Exception as exc:  # cancellation is not an Exception
                    outcome = Outcome(step, error=exc)
                step = steps.send(outcome)
        except StopIteration as stop:
            last: Outcome = stop.value
        finally:
            steps.close()  # cancelled: the loop gives back what it holds
        result: T = replay(last)
        return result


def _cause(outcome: Outcome) -> str:
    return describe_cause(outcome.error, outcome.result)


def _expected(outcome: Outcome, took: float) -> float:
    """What the next attempt may be expected to take, judging by the last one.

    An attempt cut short by a timeout (``TimeoutError``, httpx's ``ReadTimeout``,
    botocore's ``ReadTimeoutError``, requests' ``Timeout``) tells nothing of that: 0.
    """
    error = outcome.error
    if error is not None and (
        isinstance(error, TimeoutError)
        or any("Timeout" in cls.__name__ for cls in type(error).__mro__)
    ):
        return 0.0
    return took
