"""Retry: how many attempts, and how long to wait between them (full jitter).

The delay before retry ``n`` (0 for the first retry) is drawn uniformly from
``[0, min(cap, base * 2**n)]``: "full jitter" from the AWS Architecture Blog's
"Exponential Backoff And Jitter"; tenacity's ``wait_exponential`` computes the
ceiling. A destination's own hint replaces the draw (a hint longer than ``cap`` ends
the call instead). An optional ``deadline`` bounds the retries of a call: none is made
that could not finish by it. An attempt in progress is never cut short.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Final

import tenacity

from outlast._config import Settings
from outlast._exceptions import ConfigError
from outlast.policy._clock import Duration, to_seconds

__all__ = ["DEFAULT_ATTEMPTS", "DEFAULT_BASE", "DEFAULT_CAP", "Retry"]

DEFAULT_ATTEMPTS: Final = 3
DEFAULT_BASE: Final = 0.05
DEFAULT_CAP: Final = 20.0

Uniform = Callable[[float, float], float]


#: The longest backoff a Retry may wait (seconds).
MAX_WAIT: Final = 86400.0


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class Retry:
    """How a failed call is retried. An immutable value: share one everywhere.

    ``attempts`` counts the first call (1 means never retry). ``base`` and ``cap`` shape
    the full-jitter backoff; ``deadline``, if set, is the most a whole call may take,
    waits included: a retry is not made unless its wait, and an attempt as long as the
    last one took, would end before it. An attempt in progress is not interrupted: bound
    it with its own timeout (the httpx transports cut each attempt's to what remains).
    Durations are seconds or :class:`datetime.timedelta`.

    Added in 0.1.0.
    """

    attempts: int
    base: float
    cap: float
    deadline: float | None

    def __init__(
        self,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        base: Duration = DEFAULT_BASE,
        cap: Duration = DEFAULT_CAP,
        deadline: Duration | None = None,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigError("attempts", attempts, "a whole number of at least 1")
        base_s = to_seconds("base", base)
        cap_s = to_seconds("cap", cap)
        if cap_s > MAX_WAIT:  # time.sleep overflows long before 1e308 s
            raise ConfigError("cap", cap, f"at most {MAX_WAIT:g} seconds (a day)")
        if base_s > cap_s:
            raise ConfigError("base", base, f"at most cap ({cap_s:g})")
        limit = None if deadline is None else to_seconds("deadline", deadline, allow_zero=False)
        object.__setattr__(self, "attempts", attempts)
        object.__setattr__(self, "base", base_s)
        object.__setattr__(self, "cap", cap_s)
        object.__setattr__(self, "deadline", limit)

    @classmethod
    def from_settings(cls, settings: Settings) -> Retry:
        """A Retry from ``OUTLAST_RETRY_ATTEMPTS``, ``_BASE``, ``_CAP`` and ``_DEADLINE``."""
        return cls(
            attempts=settings.retry_attempts,
            base=settings.retry_base,
            cap=settings.retry_cap,
            deadline=settings.retry_deadline,
        )

    def backoff(self, retry: int, uniform: Uniform = random.uniform) -> float:
        """The jittered wait before retry ``retry`` (0 for the first retry).

        tenacity's ``wait_exponential(multiplier=base, max=cap)`` gives the ceiling and
        ``uniform`` draws below it: ``wait_random_exponential``, with a draw a test can
        inject.
        """
        state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = retry + 1
        ceiling = tenacity.wait_exponential(multiplier=self.base, max=self.cap)(state)
        return uniform(0.0, ceiling)

    def delay(
        self, retry: int, hint: float | None = None, uniform: Uniform = random.uniform
    ) -> float:
        """The wait before retry ``retry``: the destination's ``hint`` if given, capped."""
        if hint is not None:
            return min(self.cap, max(0.0, hint))
        return self.backoff(retry, uniform)
