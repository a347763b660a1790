"""Policy.derive: other rules on top of a policy, the same breakers and budgets."""

from __future__ import annotations

import pytest

from outlast import CircuitBreaker, CircuitOpenError, Policy, Retry
from outlast.policy import Decision, Outcome

from .helpers import FakeClock


def failing() -> None:
    raise ConnectionError("refused")


def never_retry(outcome: Outcome, /) -> Decision:
    return Decision(retry=False, unwell=True)


def test_a_derived_policy_shares_every_keys_breaker_both_ways() -> None:
    clock = FakeClock()
    policy = Policy(
        retry=Retry(attempts=1),
        breaker=CircuitBreaker(failures=2, reset=5, min_reset=5),
        clock=clock,
        sleep=clock.sleep,
    )
    derived = policy.derive(classify_error=never_retry)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            derived.for_key("https://api.example:443").call(failing)
    assert policy.for_key("https://api.example:443").state == "open"  # the original sees it
    with pytest.raises(CircuitOpenError):
        policy.for_key("https://api.example:443").call(failing)
    assert derived.retry_after() == 0.0  # its own key (the policy's name) is untouched
    assert derived.for_key("https://api.example:443").retry_after() == pytest.approx(5)


def test_derived_rules_stay_with_the_derived_policy() -> None:
    calls: list[str] = []

    def counting(outcome: Outcome, /) -> Decision:
        calls.append("derived")
        return Decision(retry=False, unwell=False)

    clock = FakeClock()
    policy = Policy(retry=Retry(attempts=3), clock=clock, sleep=clock.sleep)
    derived = policy.derive(classify_error=counting)
    attempts = 0

    def flaky() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("refused")

    # The derived view of a key is made first; the original must not inherit its rules.
    with pytest.raises(ConnectionError):
        derived.for_key("k").call(flaky)
    assert (attempts, calls) == (1, ["derived"])
    with pytest.raises(ConnectionError):
        policy.for_key("k").call(flaky)
    assert attempts == 1 + 3  # the original's retry_all retried, its classifier unchanged
    assert calls == ["derived"]
