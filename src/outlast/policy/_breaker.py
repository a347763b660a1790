"""CircuitBreaker: stop calling a destination that keeps failing, probe it now and then.

The state (closed, open, half-open), the failure counter and the listeners are
pybreaker's: a ``pybreaker.CircuitBreaker`` over a ``CircuitMemoryStorage`` holds them,
and its ``open()`` / ``half_open()`` / ``close()`` make the transitions. What pybreaker
gets wrong for us is left out: its ``call()`` holds a lock around the guarded call (so
one breaker serialises every caller), times the reset on the wall clock and lets every
caller through when half-open. Here the guarded call never runs under a lock (the lock
is held only while state changes), the reset is timed on the injected monotonic clock,
and exactly one caller probes a half-open breaker while the others fail fast.

"Exactly one probe" is kept with tokens: :meth:`BreakerState.allow` hands the probe a
fresh token (a generation number) and only that token can settle or free the probe
slot; an older probe reporting late is counted as an ordinary call. A probe in flight
is presumed lost only after ``probe_timeout`` (longer than ``reset``), and only then
may another caller probe.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Final

import pybreaker

from outlast._config import Settings
from outlast._events import Emitter
from outlast._exceptions import CircuitOpenError, ConfigError
from outlast.policy._clock import Clock, Duration, to_seconds
from outlast.policy._events import BreakerStateChanged

__all__ = [
    "CLOSED",
    "DEFAULT_FAILURES",
    "DEFAULT_PROBE_TIMEOUT",
    "DEFAULT_RESET",
    "HALF_OPEN",
    "OPEN",
    "CircuitBreaker",
]

DEFAULT_FAILURES: Final = 5
DEFAULT_RESET: Final = 5.0
DEFAULT_PROBE_TIMEOUT: Final = 60.0

CLOSED: Final = pybreaker.STATE_CLOSED
OPEN: Final = pybreaker.STATE_OPEN
HALF_OPEN: Final = pybreaker.STATE_HALF_OPEN


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class CircuitBreaker:
    """When a destination's breaker opens and how long it stays open. An immutable value.

    After ``failures`` consecutive failures that the classifier calls "unwell" the
    breaker opens: calls fail at once with :class:`~outlast.CircuitOpenError`. After
    ``reset`` seconds one probe is let through; its success closes the breaker, its
    failure opens it for another ``reset``. While the probe is in flight every other
    caller fails fast; only a probe that has not reported for ``probe_timeout`` seconds
    is presumed lost and lets another caller probe (default: 60 s, or twice ``reset``
    if that is longer; it may not be shorter than ``reset``).

    Added in 0.1.0.
    """

    failures: int
    reset: float
    probe_timeout: float

    def __init__(
        self,
        *,
        failures: int = DEFAULT_FAILURES,
        reset: Duration = DEFAULT_RESET,
        probe_timeout: Duration | None = None,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ConfigError("failures", failures, "a whole number of at least 1")
        reset_s = to_seconds("reset", reset, allow_zero=False)
        if probe_timeout is None:
            lost = max(DEFAULT_PROBE_TIMEOUT, 2 * reset_s)
        else:
            lost = to_seconds("probe_timeout", probe_timeout, allow_zero=False)
            if lost < reset_s:
                raise ConfigError("probe_timeout", probe_timeout, f"at least reset ({reset_s:g})")
        object.__setattr__(self, "failures", failures)
        object.__setattr__(self, "reset", reset_s)
        object.__setattr__(self, "probe_timeout", lost)

    @classmethod
    def from_settings(cls, settings: Settings) -> CircuitBreaker:
        """A breaker from ``OUTLAST_BREAKER_FAILURES`` and ``OUTLAST_BREAKER_RESET``."""
        return cls(failures=settings.breaker_failures, reset=settings.breaker_reset)


def _forced_open(name: str, reset: float) -> CircuitOpenError:
    """The error of a breaker pinned open: no probe comes until the pin is released."""
    error = CircuitOpenError(name, reset)
    error.args = (
        f"circuit {name!r} is forced open (outlast.testing.force_open); "
        "no call or probe is let through until it is released",
    )
    return error


class _Relay(pybreaker.CircuitBreakerListener):
    """Collects pybreaker's state changes so they are emitted after the lock is let go."""

    def __init__(self) -> None:
        self.pending: list[tuple[str | None, str]] = []

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self.pending.append((None if old_state is None else old_state.name, new_state.name))


class BreakerState:
    """The live breaker of one key. Thread-safe; never holds its lock around a call."""

    __slots__ = (
        "_clock",
        "_config",
        "_emitter",
        "_forced",
        "_lock",
        "_opened_at",
        "_pb",
        "_probe",
        "_probe_since",
        "_relay",
        "_storage",
        "_tokens",
        "name",
    )

    def __init__(self, config: CircuitBreaker, name: str, clock: Clock, emitter: Emitter) -> None:
        self._config = config
        self.name = name
        self._clock = clock
        self._emitter = emitter
        self._lock = threading.Lock()
        self._storage = pybreaker.CircuitMemoryStorage(CLOSED)
        self._relay = _Relay()
        self._pb = pybreaker.CircuitBreaker(
            fail_max=config.failures,
            reset_timeout=config.reset,
            state_storage=self._storage,
            listeners=[self._relay],
            name=name,
        )
        self._opened_at: float | None = None
        self._probe = 0  # the token of the probe in flight; 0 when there is none
        self._probe_since: float | None = None
        self._tokens = 0  # the last token handed out
        self._forced: str | None = None
        emitter.emit(BreakerStateChanged(key=name, old=None, new=self._storage.state))

    @property
    def config(self) -> CircuitBreaker:
        return self._config

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        return str(self._storage.state)

    @property
    def failures(self) -> int:
        """Consecutive unwell failures counted while closed."""
        return int(self._storage.counter)

    def allow(self) -> int:
        """Let a call through, or raise CircuitOpenError.

        Returns 0 for an ordinary call, or the probe's token (a positive number) when
        the caller is the probe. Pass it back to :meth:`succeeded`, :meth:`failed` or
        :meth:`abandoned`: only the probe in flight can settle the probe slot.
        """
        if self._storage.state == CLOSED:
            return 0
        try:
            with self._lock:
                return self._admit()
        finally:
            self._flush()

    def _admit(self) -> int:
        state = self._storage.state
        if state == CLOSED:
            return 0
        now = self._clock()
        config = self._config
        if self._forced == OPEN:
            raise _forced_open(self.name, config.reset)
        if state == OPEN:
            if self._opened_at is None:  # opened elsewhere (a shared storage): start timing now
                self._opened_at = now
            wait = self._opened_at + config.reset - now
            if wait > 0:
                raise CircuitOpenError(self.name, wait)
            self._pb.half_open()
        elif self._probe and self._probe_since is not None:
            # Half-open with a probe in flight: only a probe silent for probe_timeout
            # is presumed lost (its token goes stale and this caller probes instead).
            lost = self._probe_since + config.probe_timeout - now
            if lost > 0:
                raise CircuitOpenError(self.name, min(config.reset, lost))
        self._tokens += 1
        self._probe = self._tokens
        self._probe_since = now
        return self._probe

    def _claim(self, probe: int) -> bool:
        """Under the lock: True (and the slot freed) if ``probe`` is the probe in flight."""
        if probe and probe == self._probe:
            self._probe = 0
            self._probe_since = None
            return True
        return False

    def succeeded(self, probe: int) -> None:
        """Record a call that showed the destination well (``probe``: from :meth:`allow`)."""
        if probe:
            with self._lock:
                if self._claim(probe):
                    if self._storage.state == HALF_OPEN:
                        self._storage.reset_counter()
                        self._pb.close()
                elif self._storage.state == CLOSED:  # a stale probe: an ordinary call
                    self._storage.reset_counter()
            self._flush()
        elif self._storage.counter:
            with self._lock:
                if self._storage.state == CLOSED:
                    self._storage.reset_counter()

    def failed(self, probe: int) -> None:
        """Record a failure that means the destination is unwell."""
        with self._lock:
            state = self._storage.state
            if self._claim(probe):
                if state == HALF_OPEN:
                    self._trip()
            elif state == CLOSED and self._forced != CLOSED:  # ordinary, or a stale probe
                self._storage.increment_counter()
                if self._storage.counter >= self._config.failures:
                    self._trip()
        self._flush()

    def abandoned(self, probe: int) -> None:
        """The call ended without a verdict (cancelled, interrupted): free its probe slot."""
        if probe:
            with self._lock:
                self._claim(probe)

    def _trip(self) -> None:
        self._opened_at = self._clock()
        self._pb.open()

    def force(self, state: str | None) -> None:
        """Pin the breaker open or closed (``None`` releases it, closed)."""
        with self._lock:
            self._forced = state
            self._probe = 0  # a probe in flight goes stale
            self._probe_since = None
            if state == OPEN:
                if self._storage.state != OPEN:
                    self._trip()
            elif self._storage.state != CLOSED:
                self._storage.reset_counter()
                self._pb.close()
            else:
                self._storage.reset_counter()
        self._flush()

    def _flush(self) -> None:
        pending = self._relay.pending
        while pending:
            try:
                old, new = pending.pop(0)
            except IndexError:  # another thread emitted it
                return
            self._emitter.emit(BreakerStateChanged(key=self.name, old=old, new=new))
