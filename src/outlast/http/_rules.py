"""What a transport adds to whatever policy it is given, and its seam into that policy.

A transport runs each request through a *view* of its policy: the same breakers,
budgets and configuration (one registry of origins, so ``policy.for_key(origin)`` shows
what the transport did), with one thing added: the policy's sleep first frees the failed
response of the attempt being retried (the retry is certain once the policy sleeps), so
no pool connection is held through the backoff, and none is lost if the wait is
cancelled.

The policy layer has no public way to derive such a view, so :func:`http_view` builds
it from the policy's internals; this module is the only place ``outlast.http`` does so.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from outlast.policy import Policy

__all__ = ["HELD", "Held", "http_view", "retry_after"]


class Held(Protocol):
    """What an attempt holds between tries: a response to free before the policy waits."""

    def release(self) -> None: ...

    async def arelease(self) -> None: ...


#: The attempts of the request the current thread (or task) is making.
HELD: Final[contextvars.ContextVar[Held | None]] = contextvars.ContextVar(
    "outlast.http.held", default=None
)


def _releasing(sleep: Callable[[float], None]) -> Callable[[float], None]:
    def release_then_sleep(seconds: float) -> None:
        held = HELD.get()
        if held is not None:
            held.release()
        sleep(seconds)

    return release_then_sleep


def _areleasing(asleep: Callable[[float], Awaitable[None]]) -> Callable[[float], Awaitable[None]]:
    async def release_then_sleep(seconds: float) -> None:
        held = HELD.get()
        if held is not None:
            await held.arelease()
        await asleep(seconds)

    return release_then_sleep


def http_view(policy: Policy) -> Policy:
    """``policy`` freeing failed responses before it sleeps, sharing its breakers and budgets."""
    core = copy.copy(policy._core)  # shares the registry of keys and its lock
    rules = core.rules
    core.rules = dataclasses.replace(
        rules,
        sleep=_releasing(rules.sleep),
        asleep=_areleasing(rules.asleep),
    )
    view = object.__new__(Policy)
    view._core = core
    view._guard = policy._guard
    return view


def retry_after(policy: Policy) -> float:
    """Seconds until the breaker of ``policy``'s key lets a call through."""
    guard = policy._guard
    if guard is None or guard.breaker is None:
        return 0.0
    return guard.breaker.retry_after()
