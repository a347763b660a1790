"""Exercised by ``mypy --strict`` (tests/policy/test_typing.py): the policy API's types.

Each ``type: ignore`` marks a call mypy must reject; with ``warn_unused_ignores`` (part
of ``--strict``) an ignore that is no longer needed fails the check. pytest collects this
file too, so importing it must do nothing harmful: the calls sit in functions nobody runs.
"""

from __future__ import annotations

import datetime
import sys

from outlast.policy import (
    CircuitBreaker,
    Decision,
    Outcome,
    Phase,
    Policy,
    Retry,
    RetryBudget,
    force_open,
    set_testing,
)

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type

policy = Policy(
    retry=Retry(attempts=4, base=datetime.timedelta(milliseconds=50), cap=2.0, deadline=10),
    budget=RetryBudget(ratio=0.2, floor=1.0, window=datetime.timedelta(seconds=10)),
    breaker=CircuitBreaker(failures=3, reset=datetime.timedelta(seconds=5)),
)


def classify(outcome: Outcome) -> Decision:
    if isinstance(outcome.error, ConnectionError):
        return Decision.failure(Phase.CONNECT, idempotent=False)
    return Decision.ACCEPT


def _keyed() -> None:
    keyed = Policy.from_env({}, classify_error=classify).for_key("https://api.example")
    assert_type(keyed, Policy)


@policy
def fetch(url: str, *, timeout: float = 1.0) -> bytes:
    return url.encode()


@policy
async def afetch(url: str) -> int:
    return len(url)


def _calls() -> None:
    assert_type(fetch("x", timeout=2.0), bytes)
    assert_type(policy.call(fetch, "x"), bytes)
    assert_type(policy.call(len, "abc"), int)


async def use() -> None:
    assert_type(await afetch("x"), int)
    assert_type(await policy.acall(afetch, "x"), int)


def _rejected() -> None:
    fetch(1)  # type: ignore[arg-type]
    fetch("x", retries=3)  # type: ignore[call-arg]
    policy.call(fetch, "x", 1)  # type: ignore[call-arg]
    Retry(3)  # type: ignore[call-arg]
    Retry(attempts="3")  # type: ignore[arg-type]


def _testing_mode() -> None:
    with set_testing(True, attempts=1), force_open(policy):
        pass
