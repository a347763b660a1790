"""RetryBudget: retries may not exceed a fraction of calls (Finagle's retry budget).

Over a sliding window (``window`` seconds, kept in ten buckets) a key may retry at most
``ratio`` times the calls it made, plus ``floor`` retries per second of window so that a
quiet destination can still retry at all. The floor is also capped policy-wide: the
retries that only the floor allows (beyond ``ratio`` of their key's calls) come from
one :class:`FloorPool` per policy, ``floor`` per second across every key, so a
hundred quiet origins do not get a hundred floors. When the budget is spent, the call
fails at once with its own error. Counting a call costs one clock reading and one
short lock.

A retry's token is taken before its wait (:meth:`BudgetState.take`) and given back
(:meth:`BudgetState.refund`) if the retry is not made after all (the breaker refused
it after the wait, the wait was cancelled), so callers waiting on a backoff cannot
all be promised the same last token.

A real window ``[t - window, t]`` touches eleven buckets, not ten. So that the bound
holds for it and not only for bucket-aligned windows, a retry is weighed against the
retries of all eleven buckets the window touches (the oldest only partly inside it)
and the calls of the ten buckets wholly inside it: retries are over-counted and calls
under-counted by at most a tenth of a window, never the other way.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Final

from outlast._config import Settings
from outlast._exceptions import ConfigError
from outlast.policy._clock import Clock, Duration, to_seconds

__all__ = [
    "BUCKETS",
    "DEFAULT_FLOOR",
    "DEFAULT_RATIO",
    "DEFAULT_WINDOW",
    "BudgetState",
    "FloorPool",
    "RetryBudget",
    "Token",
]

DEFAULT_RATIO: Final = 0.1
DEFAULT_FLOOR: Final = 1.0
DEFAULT_WINDOW: Final = 10.0
BUCKETS: Final = 10
_SLOTS: Final = BUCKETS + 1  # the buckets a window of BUCKETS bucket-widths can touch


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class RetryBudget:
    """How many retries a destination may receive. An immutable value.

    A retry at time ``t`` is admitted only if, counting it, the retries in
    ``[t - window, t]`` stay within ``ratio * calls + floor * window``, the calls
    being those in the same ``window`` seconds (less at most its oldest tenth, which
    the ten buckets that hold the counts cannot split).

    Added in 0.1.0.
    """

    ratio: float
    floor: float
    window: float

    def __init__(
        self,
        *,
        ratio: float = DEFAULT_RATIO,
        floor: float = DEFAULT_FLOOR,
        window: Duration = DEFAULT_WINDOW,
    ) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
            raise ConfigError("ratio", ratio, "a fraction from 0 to 1")
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor < 1e6:
            raise ConfigError("floor", floor, "retries per second, from 0 to below 1e6")
        object.__setattr__(self, "ratio", float(ratio))
        object.__setattr__(self, "floor", float(floor))
        object.__setattr__(self, "window", to_seconds("window", window, allow_zero=False))

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryBudget:
        """A budget whose ratio is ``OUTLAST_RETRY_BUDGET``."""
        return cls(ratio=settings.retry_budget)

    @property
    def reserve(self) -> float:
        """Retries the window allows whatever the traffic: ``floor * window``."""
        return self.floor * self.window


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """One retry taken from a budget: the bucket it was counted in, and whether the
    policy-wide floor paid for it."""

    epoch: int
    floor: bool


class FloorPool:
    """The retries every key of one policy took on its floor alone, over the window.

    At most ``floor * window`` of them (one reserve for the whole policy). Thread-safe.
    """

    __slots__ = ("_counts", "_epochs", "_lock", "_reserve")

    def __init__(self, config: RetryBudget) -> None:
        self._reserve = config.reserve
        self._lock = threading.Lock()
        self._epochs = [-_SLOTS - 1] * _SLOTS
        self._counts = [0] * _SLOTS

    def take(self, epoch: int) -> bool:
        """Count one floor retry in bucket ``epoch`` if the pool allows it."""
        oldest = epoch - BUCKETS
        with self._lock:
            used = sum(
                n for e, n in zip(self._epochs, self._counts, strict=True) if oldest <= e <= epoch
            )
            if used + 1 > self._reserve:
                return False
            slot = epoch % _SLOTS
            if self._epochs[slot] != epoch:
                self._epochs[slot] = epoch
                self._counts[slot] = 0
            self._counts[slot] += 1
            return True

    def refund(self, epoch: int) -> None:
        with self._lock:
            slot = epoch % _SLOTS
            if self._epochs[slot] == epoch and self._counts[slot] > 0:
                self._counts[slot] -= 1


class BudgetState:
    """The live counts of one key's budget. Thread-safe; the lock is held for counting only."""

    __slots__ = (
        "_calls",
        "_clock",
        "_config",
        "_epochs",
        "_lock",
        "_pool",
        "_retries",
        "_width",
    )

    def __init__(self, config: RetryBudget, clock: Clock, pool: FloorPool | None = None) -> None:
        self._config = config
        self._clock = clock
        self._pool = pool
        self._width = config.window / BUCKETS
        self._lock = threading.Lock()
        self._epochs = [-_SLOTS - 1] * _SLOTS
        self._calls = [0] * _SLOTS
        self._retries = [0] * _SLOTS

    @property
    def config(self) -> RetryBudget:
        return self._config

    def _slot(self, epoch: int) -> int:
        slot = epoch % _SLOTS
        if self._epochs[slot] != epoch:
            # Counts first, the epoch last: :meth:`deposit` counts without the lock once it
            # sees the new epoch, so it must never see it beside the old bucket's count
            # (it would carry that count, plus one, into the new bucket).
            self._calls[slot] = 0
            self._retries[slot] = 0
            self._epochs[slot] = epoch
        return slot

    def deposit(self, now: float) -> None:
        """Count one call made at ``now`` (a reading of the budget's clock).

        This runs on every call, so the count itself is made without the lock (which
        cost an aiohttp request 2% of its CPU): two threads counting at once may count
        one call, which only makes the budget stricter. A bucket is started afresh
        under the lock (once per bucket width), so a retry :meth:`take` counted in it
        is never wiped.
        """
        epoch = int(now // self._width)
        slot = epoch % _SLOTS
        if self._epochs[slot] != epoch:
            with self._lock:
                self._slot(epoch)
        self._calls[slot] += 1

    def _weigh(self, epoch: int) -> tuple[int, int]:
        """Under the lock: (calls, retries) that a retry in bucket ``epoch`` is weighed by.

        Retries: every bucket that ``[t - window, t]`` touches (``epoch - BUCKETS`` on).
        Calls: only the buckets wholly inside it (``epoch - BUCKETS + 1`` on).
        """
        calls = retries = 0
        oldest = epoch - BUCKETS
        epochs = self._epochs
        for i in range(_SLOTS):
            seen = epochs[i]
            if oldest <= seen <= epoch:
                retries += self._retries[i]
                if seen != oldest:
                    calls += self._calls[i]
        return calls, retries

    def spare(self) -> bool:
        """Whether the window would allow a retry now, without taking it."""
        epoch = int(self._clock() // self._width)
        with self._lock:
            calls, retries = self._weigh(epoch)
            return retries + 1 <= self._config.ratio * calls + self._config.reserve

    def withdraw(self) -> bool:
        """Take one retry if the window allows it; False when the budget is spent."""
        return self.take() is not None

    def take(self) -> Token | None:
        """Take one retry if the window (and the policy-wide floor) allows it, else None.

        Give the token back with :meth:`refund` if the retry is not made after all.
        """
        epoch = int(self._clock() // self._width)
        config = self._config
        with self._lock:
            slot = self._slot(epoch)
            calls, retries = self._weigh(epoch)
            allowed = config.ratio * calls
            if retries + 1 > allowed + config.reserve:
                return None
            floor = retries + 1 > allowed  # only the floor allows it
            if floor and self._pool is not None and not self._pool.take(epoch):
                return None
            self._retries[slot] += 1
            return Token(epoch, floor)

    def refund(self, token: Token) -> None:
        """Give back a retry taken by :meth:`take` that was not made."""
        epoch = token.epoch
        with self._lock:
            slot = epoch % _SLOTS
            if self._epochs[slot] == epoch and self._retries[slot] > 0:
                self._retries[slot] -= 1
        if token.floor and self._pool is not None:
            self._pool.refund(epoch)

    def counts(self) -> tuple[int, int]:
        """(calls, retries) that a retry now would be weighed by."""
        epoch = int(self._clock() // self._width)
        with self._lock:
            return self._weigh(epoch)
