"""The policy layer's events, reported through :class:`outlast.Event` listeners.

Each is a frozen, slotted :class:`~outlast.Event` logged under ``outlast.policy``.
``key`` names the destination whose state the event concerns (the policy's name for
its default state).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

from outlast._events import Event

__all__ = ["BreakerStateChanged", "BudgetExhausted", "RetryScheduled", "describe_cause"]

LOGGER = logging.getLogger("outlast.policy")


def describe_cause(error: BaseException | None, result: object = None) -> str:
    """A short text for what made an attempt fail: ``'TimeoutError: slow'``."""
    if error is None:
        return f"result {result!r}"[:200]
    return f"{type(error).__name__}: {error}"[:200]


@dataclasses.dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """Attempt ``attempt`` failed with ``cause``; the next starts after ``delay`` seconds.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "policy.retry_scheduled"
    level: ClassVar[int] = logging.INFO
    throttle: ClassVar[tuple[str, ...] | None] = ("key",)

    key: str
    attempt: int
    delay: float
    cause: str


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetExhausted(Event):
    """The retry budget for ``key`` is spent: attempt ``attempt``'s error is raised as is.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "policy.budget_exhausted"
    level: ClassVar[int] = logging.INFO
    throttle: ClassVar[tuple[str, ...] | None] = ("key",)

    key: str
    attempt: int
    cause: str


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerStateChanged(Event):
    """The breaker for ``key`` moved from ``old`` to ``new`` (``old`` is None at creation).

    States are ``"closed"``, ``"open"`` and ``"half-open"`` (pybreaker's names).

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "policy.breaker_state"
    level: ClassVar[int] = logging.INFO

    key: str
    old: str | None
    new: str

    def log_level(self) -> int:
        """DEBUG for a breaker being created closed: nothing happened (INFO otherwise)."""
        return logging.DEBUG if self.old is None and self.new == "closed" else self.level
