"""What a policy's breakers and budgets hold, as plain frozen data: :meth:`Policy.snapshot`.

Times are wall-clock (seconds since the epoch, ``time.time()``).
"""

from __future__ import annotations

import dataclasses

__all__ = ["KeyState", "PolicySnapshot"]


@dataclasses.dataclass(frozen=True, slots=True)
class KeyState:
    """One destination's breaker and budget.

    ``state`` is ``"closed"``, ``"open"`` or ``"half-open"`` (None when the policy has
    no breaker); ``failures`` the consecutive failures counted while closed;
    ``open_since`` when it opened (None while closed); ``retry_after`` the seconds
    until it lets a call through. ``calls`` and ``retries`` are what the retry budget
    counts in its current window (None without a budget).

    Added in 0.1.0.
    """

    key: str
    state: str | None
    failures: int
    open_since: float | None
    retry_after: float
    calls: int | None
    retries: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """Every key a policy holds state for, at ``taken_at``; its own name first.

    Added in 0.1.0.
    """

    name: str
    taken_at: float
    keys: tuple[KeyState, ...]

    @property
    def open(self) -> tuple[KeyState, ...]:
        """The keys whose breaker is not closed (open or half-open)."""
        return tuple(k for k in self.keys if k.state not in (None, "closed"))

    def get(self, key: str) -> KeyState | None:
        """The state of ``key``, or None when the policy holds none for it."""
        return next((k for k in self.keys if k.key == key), None)
