"""The retries of one call, once its first attempt has failed: tenacity runs the loop.

The success path never comes here, nor does an attempt its classifier does not want
retried (:func:`judge`, :func:`tell` and :func:`replay` serve those). When the first
attempt fails and its classifier says "retry", a :class:`Run` is built and hands
tenacity its hooks: ``retry`` (the latest decision), ``wait`` (full jitter or the
destination's hint), ``stop`` (attempts, a hint longer than the cap, the deadline, a
breaker that is not closed, a spent budget) and ``before_sleep`` (the event).
tenacity's first attempt replays the failure already seen.

The budget's token is taken by ``stop``, before the wait, as the last thing that may
say no: a caller is never made to wait for a retry the budget then refuses. After the
wait, the breaker's gate is passed; if it refuses (it opened meanwhile) the token is
given back and the last outcome is returned. A wait that is cancelled or interrupted
gives its token back too. Whatever ends the loop, the caller gets the last attempt's
own error (or result), never a tenacity wrapper.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import tenacity

from outlast._events import Emitter
from outlast._exceptions import CircuitOpenError
from outlast.policy import _testing
from outlast.policy._breaker import CLOSED, BreakerState
from outlast.policy._budget import BudgetState, Token
from outlast.policy._classify import Classifier, Decision, Outcome
from outlast.policy._clock import AsyncSleep, Clock, Sleep
from outlast.policy._events import BudgetExhausted, RetryScheduled, describe_cause
from outlast.policy._retry import Retry, Uniform

__all__ = ["Guard", "Rules", "Run", "judge", "replay", "tell"]

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
    """One call's retry loop. Built only after a first attempt failed and may be retried."""

    __slots__ = (
        "_attempts",
        "_deadline",
        "_fresh",
        "_guard",
        "_outcome",
        "_refused",
        "_rules",
        "_token",
        "decision",
    )

    def __init__(
        self,
        rules: Rules,
        guard: Guard,
        started: float,
        limit: float | None,
        first: Outcome,
        decision: Decision,
    ) -> None:
        self._rules = rules
        self._guard = guard
        self._outcome = first
        self.decision = decision
        self._refused = False
        self._fresh = True
        self._token: Token | None = None  # the budget's token for the retry being waited for
        retry = rules.retry
        if retry is not None and retry.deadline is not None:
            limit = retry.deadline if limit is None else min(limit, retry.deadline)
        self._deadline = None if limit is None else started + limit
        attempts = 1 if retry is None else retry.attempts
        mode = _testing.current()
        if mode is not None and mode.attempts is not None:
            attempts = min(attempts, mode.attempts)
        self._attempts = attempts

    # -- tenacity's hooks ------------------------------------------------------------

    def _retry(self, state: tenacity.RetryCallState) -> bool:
        return self.decision.retry and not self._refused

    def _wait(self, state: tenacity.RetryCallState) -> float:
        retry = self._rules.retry
        assert retry is not None  # a Run exists only when retries are configured
        return retry.delay(state.attempt_number - 1, self.decision.delay, self._rules.uniform)

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= self._attempts:
            return True
        retry = self._rules.retry
        hint = self.decision.delay
        if retry is not None and hint is not None and hint > retry.cap:
            # The destination asked for a longer wait than this policy makes: return its
            # answer now rather than ask again sooner than it said.
            return True
        deadline = self._deadline
        if deadline is not None and self._rules.clock() + state.upcoming_sleep >= deadline:
            return True  # the retry could not start, let alone finish, in time
        breaker = self._guard.breaker
        if breaker is not None and breaker.state != CLOSED:
            # Open (or half-open, another caller's probe in flight): the retry would be
            # refused, or would probe with a request already seen failing. Stop now,
            # rather than wait out a backoff first.
            return True
        budget = self._guard.budget
        if budget is not None:
            token = budget.take()  # before the wait: the last word on whether to retry
            if token is None:
                self._exhausted()
                return True
            self._token = token
        return False

    def _give_back(self) -> None:
        """Return the budget's token of a retry that is not made after all."""
        token, self._token = self._token, None
        if token is not None and self._guard.budget is not None:
            self._guard.budget.refund(token)

    def _exhausted(self) -> None:
        self._rules.emitter.emit(
            BudgetExhausted(key=self._guard.key, attempt=self._outcome.attempt, cause=self._cause())
        )

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        self._rules.emitter.emit(
            RetryScheduled(
                key=self._guard.key,
                attempt=state.attempt_number,
                delay=state.upcoming_sleep,
                cause=self._cause(),
            )
        )

    def _give_up(self, state: tenacity.RetryCallState) -> Any:
        assert state.outcome is not None
        return state.outcome.result()  # the last attempt's own error or result

    def _cause(self) -> str:
        return describe_cause(self._outcome.error, self._outcome.result)

    def _options(self) -> dict[str, Any]:
        return {
            "retry": self._retry,
            "wait": self._wait,
            "stop": self._stop,
            "before_sleep": self._before_sleep,
            "retry_error_callback": self._give_up,
        }

    # -- attempts --------------------------------------------------------------------

    def replay(self) -> T:
        """Repeat what the last attempt produced, without calling anything."""
        result: T = replay(self._outcome)
        return result

    def _gate(self) -> int | None:
        """Pass the breaker, after the wait, for a retry whose budget token is held.

        Returns the probe token (0 if not probing), or None when the breaker refuses
        the retry (it opened during the wait); the budget's token is then given back.
        """
        breaker = self._guard.breaker
        probe = 0
        if breaker is not None:
            try:
                probe = breaker.allow()
            except CircuitOpenError:
                self._refused = True
                self._give_back()
                return None
        self._token = None  # spent on this retry
        return probe

    def settle(self, outcome: Outcome, probe: int) -> Decision:
        """Classify an attempt's outcome and tell the breaker."""
        decision = judge(self._rules, outcome)
        tell(self._guard.breaker, decision, probe)
        self._outcome = outcome
        self.decision = decision
        return decision

    def _attempt(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        if self._fresh:  # tenacity's first attempt: the failure already seen
            self._fresh = False
            return self.replay()
        probe = self._gate()
        if probe is None:
            return self.replay()
        number = self._outcome.attempt + 1
        settled = False
        try:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                settled = True
                self.settle(Outcome(number, error=exc), probe)
                raise
            settled = True
            self.settle(Outcome(number, result=result), probe)
            return result
        finally:
            if not settled and self._guard.breaker is not None:
                self._guard.breaker.abandoned(probe)

    async def _aattempt(self, fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> T:
        if self._fresh:
            self._fresh = False
            return self.replay()
        probe = self._gate()
        if probe is None:
            return self.replay()
        number = self._outcome.attempt + 1
        settled = False
        try:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:  # asyncio.CancelledError is not an Exception
                settled = True
                self.settle(Outcome(number, error=exc), probe)
                raise
            settled = True
            self.settle(Outcome(number, result=result), probe)
            return result
        finally:
            if not settled and self._guard.breaker is not None:
                self._guard.breaker.abandoned(probe)

    # -- the loop --------------------------------------------------------------------

    def run(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        """Retry ``fn`` synchronously until it succeeds or a stop rule says enough."""
        if self._attempts <= 1:
            return self.replay()
        sleep = _no_sleep if _testing.current() is not None else self._rules.sleep
        retrying = tenacity.Retrying(sleep=sleep, **self._options())
        try:
            return retrying(self._attempt, fn, args, kwargs)
        finally:
            self._give_back()  # a wait cut short: the retry was not made

    async def arun(self, fn: Callable[..., Awaitable[T]], args: Any, kwargs: Any) -> T:
        """Retry the coroutine function ``fn`` until it succeeds or a stop rule says enough."""
        if self._attempts <= 1:
            return self.replay()
        asleep = _no_asleep if _testing.current() is not None else self._rules.asleep
        retrying = tenacity.AsyncRetrying(sleep=asleep, **self._options())
        try:
            result: T = await retrying(self._aattempt, fn, args, kwargs)
        finally:
            self._give_back()  # a wait cancelled: the retry was not made
        return result
