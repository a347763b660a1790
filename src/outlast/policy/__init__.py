"""outlast.policy: retries under a budget, behind circuit breakers, for sync and async calls.

This layer owns :class:`Retry` (full-jitter backoff, run by tenacity only after a
failure), :class:`RetryBudget` (retries as a fraction of calls, per destination),
:class:`CircuitBreaker` (pybreaker's state machine, driven without a lock around the
call), the :class:`Policy` that composes them, the classification hook integrations
plug into (:class:`Classifier`, :class:`Decision`, :class:`Phase`), the policy events
and the public testing mode.

It must not import httpx, botocore or ``outlast.dns``: it knows nothing of HTTP or
DNS. Integrations (``outlast.http``, ``outlast.aws``) translate their outcomes into
:class:`Decision` values. Its own imports are ``outlast._config``,
``outlast._events``, ``outlast._exceptions`` and ``outlast._async`` (a breaker's async
waiters await a verdict set on another thread).
"""

from __future__ import annotations

from outlast.policy._breaker import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerLink,
    CircuitBreaker,
    SharedBreakers,
)
from outlast.policy._budget import RetryBudget
from outlast.policy._classify import (
    Classifier,
    Decision,
    Outcome,
    Phase,
    parse_retry_after,
    retry_all,
    retry_on,
)
from outlast.policy._events import BreakerStateChanged, BudgetExhausted, RetryScheduled
from outlast.policy._policy import Policy
from outlast.policy._retry import Retry
from outlast.policy._snapshot import KeyState, PolicySnapshot
from outlast.policy._testing import force_closed, force_open, is_testing, set_testing

__all__ = [
    "CLOSED",
    "HALF_OPEN",
    "OPEN",
    "BreakerLink",
    "BreakerStateChanged",
    "BudgetExhausted",
    "CircuitBreaker",
    "Classifier",
    "Decision",
    "KeyState",
    "Outcome",
    "Phase",
    "Policy",
    "PolicySnapshot",
    "Retry",
    "RetryBudget",
    "RetryScheduled",
    "SharedBreakers",
    "force_closed",
    "force_open",
    "is_testing",
    "parse_retry_after",
    "retry_all",
    "retry_on",
    "set_testing",
]
