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

A breaker may be shared with other processes through a :class:`SharedBreakers` hook
(``outlast.fleet`` implements it over Redis): the breaker tells its :class:`BreakerLink`
what happened here (each method returns at once), and the hook calls
:meth:`BreakerState.apply_shared` when the fleet's state changes, giving the time since
the fleet opened it so every process times the reset from the same moment. A link
may also offer ``probe_wait()`` (see :class:`BreakerLink`): then, when the reset has
passed, the probe is the fleet's to give, so one process probes per reset and the
others fail fast until it settles.

A caller refused while the end of the open interval, or a probe's verdict, is near
need not fail at once: :meth:`BreakerState.wait` (and :meth:`BreakerState.await_`, for
asyncio and trio) wait up to ``CircuitBreaker.max_wait`` (and never past the caller's
own deadline) for the interval to end (then the caller probes, or waits for the probe
that another took) and for that probe's verdict: a success lets the waiters through, a
failure refuses them. A caller never waits for more than one opening. Nothing is waited
for while the breaker is closed, and no lock is held while waiting: waiters sleep, or
wait on a ``concurrent.futures.Future`` that the probe's verdict (or any change of
state) resolves.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import threading
import weakref
from collections.abc import Callable, Generator
from typing import Any, Final, Protocol

from outlast._async import wait_future
from outlast._config import Settings
from outlast._events import Emitter
from outlast._exceptions import CircuitOpenError, ConfigError
from outlast.policy._clock import AsyncSleep, Clock, Duration, Sleep, to_seconds
from outlast.policy._events import BreakerStateChanged
from outlast.policy._pybreaker import pybreaker

__all__ = [
    "BUCKETS",
    "CLOSED",
    "DEFAULT_FAILURES",
    "DEFAULT_MAX_WAIT",
    "DEFAULT_MAX_WAITERS",
    "DEFAULT_MIN_CALLS",
    "DEFAULT_MIN_RESET",
    "DEFAULT_PROBE_TIMEOUT",
    "DEFAULT_RESET",
    "DEFAULT_WINDOW",
    "HALF_OPEN",
    "OPEN",
    "BreakerLink",
    "CircuitBreaker",
    "SharedBreakers",
]

DEFAULT_FAILURES: Final = 5
DEFAULT_RESET: Final = 0.25
DEFAULT_MIN_RESET: Final = 0.05
DEFAULT_MAX_WAIT: Final = 0.25
DEFAULT_MAX_WAITERS: Final = 8
DEFAULT_PROBE_TIMEOUT: Final = 60.0
DEFAULT_MIN_CALLS: Final = 20
DEFAULT_WINDOW: Final = 10.0
BUCKETS: Final = 10  # the failure-ratio window is kept in this many buckets

CLOSED: Final = pybreaker.STATE_CLOSED
OPEN: Final = pybreaker.STATE_OPEN
HALF_OPEN: Final = pybreaker.STATE_HALF_OPEN


class _Storage(pybreaker.CircuitMemoryStorage):
    """pybreaker's in-memory storage with ``state`` and ``counter`` as plain attributes.

    Every call through a policy reads the state, and every success the failure count:
    as pybreaker's properties each was a Python call per request. pybreaker sets and
    reads them only by these names (and ``increment_counter`` / ``reset_counter``).
    """

    state: str = CLOSED  # shadows pybreaker's property: the instance's own value is read
    counter: int = 0

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state
        self.counter = 0

    def increment_counter(self) -> None:
        self.counter += 1

    def reset_counter(self) -> None:
        self.counter = 0


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class CircuitBreaker:
    """When a destination's breaker opens and how long it stays open. An immutable value.

    After ``failures`` consecutive failures that the classifier calls "unwell" the
    breaker opens: calls fail at once with :class:`~outlast.CircuitOpenError`. After
    ``min_reset`` seconds one probe is let through; its success closes the breaker,
    its failure opens it again for twice as long, and so on up to ``reset`` seconds
    (as Envoy grows an ejection, or resilience4j's exponential wait in the open state):
    a short outage is over for the callers soon after it is over for the destination,
    a long one costs it one probe per ``reset``. ``min_reset`` defaults to 0.05 s (or
    ``reset`` if that is shorter); set it to ``reset`` for a fixed interval. While the
    probe is in flight every other caller fails fast; only a probe that has not
    reported for ``probe_timeout`` seconds is presumed lost and lets another caller
    probe (default: 60 s, or twice ``reset`` if that is longer; it may not be shorter
    than ``reset``).

    A caller that the open breaker would refuse waits instead when the open interval
    ends within ``max_wait`` seconds (default 0.25 s) and within the caller's own
    deadline (``Policy.within``, ``Retry.deadline``): at the end it probes, or waits
    for the verdict of the probe another caller took, so a destination that has healed
    answers it rather than :class:`~outlast.CircuitOpenError`. A failed probe refuses
    the waiters; no caller waits longer than ``max_wait`` in all, or for more than one
    probe's verdict. ``max_wait=0`` fails every refused caller at once. At most
    ``max_waiters`` callers (default 8) wait on one breaker at a time; the others are
    refused at once, so a long outage never holds more than that many of a service's
    threads or tasks in waiting.

    With ``ratio`` set, the breaker also opens when, over the last ``window`` seconds,
    at least ``min_calls`` calls finished while it was closed and the share of "unwell"
    failures among them reached ``ratio`` (business errors count as successes,
    cancelled calls not at all). The window is kept in ten buckets, so a call leaves it
    between 0.9 and 1.0 ``window`` after it finished; it starts afresh whenever the
    breaker opens or closes. Consecutive failures open the breaker as before.

    Added in 0.1.0.
    """

    failures: int
    reset: float
    probe_timeout: float
    ratio: float | None
    min_calls: int
    window: float
    min_reset: float
    max_wait: float
    max_waiters: int

    def __init__(
        self,
        *,
        failures: int = DEFAULT_FAILURES,
        reset: Duration = DEFAULT_RESET,
        probe_timeout: Duration | None = None,
        ratio: float | None = None,
        min_calls: int = DEFAULT_MIN_CALLS,
        window: Duration = DEFAULT_WINDOW,
        min_reset: Duration | None = None,
        max_wait: Duration = DEFAULT_MAX_WAIT,
        max_waiters: int = DEFAULT_MAX_WAITERS,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ConfigError("failures", failures, "a whole number of at least 1")
        if ratio is not None and (
            isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1
        ):
            raise ConfigError("ratio", ratio, "a fraction above 0 and at most 1, or None")
        if isinstance(min_calls, bool) or not isinstance(min_calls, int) or min_calls < 1:
            raise ConfigError("min_calls", min_calls, "a whole number of at least 1")
        window_s = to_seconds("window", window, allow_zero=False)
        max_wait_s = to_seconds("max_wait", max_wait)
        if isinstance(max_waiters, bool) or not isinstance(max_waiters, int) or max_waiters < 0:
            raise ConfigError("max_waiters", max_waiters, "a whole number of at least 0")
        reset_s = to_seconds("reset", reset, allow_zero=False)
        if min_reset is None:
            first = min(DEFAULT_MIN_RESET, reset_s)
        else:
            first = to_seconds("min_reset", min_reset, allow_zero=False)
            if first > reset_s:
                raise ConfigError("min_reset", min_reset, f"at most reset ({reset_s:g})")
        if probe_timeout is None:
            lost = max(DEFAULT_PROBE_TIMEOUT, 2 * reset_s)
        else:
            lost = to_seconds("probe_timeout", probe_timeout, allow_zero=False)
            if lost < reset_s:
                raise ConfigError("probe_timeout", probe_timeout, f"at least reset ({reset_s:g})")
        object.__setattr__(self, "failures", failures)
        object.__setattr__(self, "reset", reset_s)
        object.__setattr__(self, "probe_timeout", lost)
        object.__setattr__(self, "ratio", None if ratio is None else float(ratio))
        object.__setattr__(self, "min_calls", min_calls)
        object.__setattr__(self, "window", window_s)
        object.__setattr__(self, "min_reset", first)
        object.__setattr__(self, "max_wait", max_wait_s)
        object.__setattr__(self, "max_waiters", max_waiters)

    @classmethod
    def from_settings(cls, settings: Settings) -> CircuitBreaker:
        """A breaker from ``OUTLAST_BREAKER_FAILURES`` and ``OUTLAST_BREAKER_RESET``."""
        return cls(failures=settings.breaker_failures, reset=settings.breaker_reset)


class BreakerLink(Protocol):
    """One breaker's line to the other processes sharing it. Every method returns at once.

    A link may also have a method ``probe_wait() -> float``, called (not under the
    breaker's lock) when the reset has passed and this process would probe: 0 lets it
    probe; a positive number is the seconds to fail fast for, because another process
    holds the fleet's probe or it is still being asked for. It may wait briefly for
    the answer, but never on an event loop's thread.

    Added in 0.1.0.
    """

    def failed(self) -> None:
        """A failure that means "unwell" was counted here while closed."""

    def succeeded(self) -> None:
        """A success here reset a non-zero failure count."""

    def opened(self, *, probe: bool) -> None:
        """This process opened the breaker (``probe``: a half-open probe failed)."""

    def closed(self) -> None:
        """This process's probe succeeded and closed the breaker."""


class SharedBreakers(Protocol):
    """Shares breakers between processes (``Policy(shared=...)``).

    :meth:`link` is called once per breaker. ``apply(state, opened_ago)`` is to be
    called whenever the shared state changes elsewhere: ``state`` is ``"open"`` (with
    the seconds since it opened) or ``"closed"``; it may be called from any thread.

    Added in 0.1.0.
    """

    def link(
        self,
        name: str,
        config: CircuitBreaker,
        apply: Callable[[str, float], None],
    ) -> BreakerLink: ...


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


_NEVER: Final = -(2**62)  # the epoch of a bucket that holds nothing
_ASK_LEASE: Final = -1  # _admit: the reset has passed; ask the fleet for the probe first
#: Seconds a waiter sleeps past the open interval's end (a clock that sleeps exactly
#: might otherwise land a rounding error short of it).
_PAST: Final = 1e-6


@dataclasses.dataclass(frozen=True, slots=True)
class _Pause:
    """What :meth:`BreakerState._admission` yields: sleep until the open interval ends."""

    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Verdict:
    """What :meth:`BreakerState._admission` yields: wait (at most ``seconds``) for a change.

    ``future`` is resolved by the probe's verdict or any other change of state; the
    waiter is sent back whether it was (True) or the time ran out (False).
    """

    future: concurrent.futures.Future[None]
    seconds: float


class _Window:
    """Calls and unwell failures over the last ``window`` seconds, in ten buckets.

    A bucket is ``window / BUCKETS`` seconds of the clock; a slot is reused (and its
    counts dropped) when its epoch comes round again, so nothing is swept. Counting a
    success is one clock reading and a short lock; only a failure sums the buckets.
    """

    __slots__ = ("_calls", "_clock", "_epochs", "_lock", "_unwell", "_width")

    def __init__(self, window: float, clock: Clock) -> None:
        self._clock = clock
        self._width = window / BUCKETS
        self._lock = threading.Lock()
        self._epochs = [_NEVER] * BUCKETS
        self._calls = [0] * BUCKETS
        self._unwell = [0] * BUCKETS

    def success(self) -> None:
        """Count one call that ended well (or with a business error)."""
        epoch = int(self._clock() // self._width)
        slot = epoch % BUCKETS
        with self._lock:
            if self._epochs[slot] != epoch:
                self._epochs[slot] = epoch
                self._calls[slot] = 0
                self._unwell[slot] = 0
            self._calls[slot] += 1

    def failure(self) -> tuple[int, int]:
        """Count one unwell failure; return (calls, unwell) in the window, this one included."""
        epoch = int(self._clock() // self._width)
        slot = epoch % BUCKETS
        with self._lock:
            epochs, calls, unwell = self._epochs, self._calls, self._unwell
            if epochs[slot] != epoch:
                epochs[slot] = epoch
                calls[slot] = 0
                unwell[slot] = 0
            calls[slot] += 1
            unwell[slot] += 1
            return self._sum(epoch)

    def counts(self) -> tuple[int, int]:
        """(calls, unwell) in the window now."""
        epoch = int(self._clock() // self._width)
        with self._lock:
            return self._sum(epoch)

    def _sum(self, epoch: int) -> tuple[int, int]:
        oldest = epoch - BUCKETS  # exclusive: the ten buckets up to and including ``epoch``
        total = bad = 0
        for i, seen in enumerate(self._epochs):
            if oldest < seen <= epoch:
                total += self._calls[i]
                bad += self._unwell[i]
        return total, bad

    def clear(self) -> None:
        """Start afresh (the breaker opened or closed)."""
        with self._lock:
            self._epochs = [_NEVER] * BUCKETS


class BreakerState:
    """The live breaker of one key. Thread-safe; never holds its lock around a call."""

    __slots__ = (
        "__weakref__",
        "_clock",
        "_config",
        "_emitter",
        "_forced",
        "_interval",
        "_lease",
        "_link",
        "_lock",
        "_opened_at",
        "_pb",
        "_probe",
        "_probe_since",
        "_relay",
        "_storage",
        "_tokens",
        "_verdict",
        "_waiters",
        "name",
        "window",
    )

    def __init__(
        self,
        config: CircuitBreaker,
        name: str,
        clock: Clock,
        emitter: Emitter,
        shared: SharedBreakers | None = None,
    ) -> None:
        self._config = config
        self.name = name
        self._clock = clock
        self._emitter = emitter
        self._lock = threading.Lock()
        self._storage = _Storage(CLOSED)
        self._relay = _Relay()
        self._pb = pybreaker.CircuitBreaker(
            fail_max=config.failures,
            reset_timeout=config.reset,
            state_storage=self._storage,
            listeners=[self._relay],
            name=name,
        )
        self._opened_at: float | None = None
        # How long this opening lasts: min_reset, doubled by each failed probe, up to reset.
        self._interval = config.min_reset
        self._probe = 0  # the token of the probe in flight; 0 when there is none
        self._probe_since: float | None = None
        self._tokens = 0  # the last token handed out
        self._forced: str | None = None
        # Resolved (and replaced) at the next change of state; made only when a caller waits.
        self._verdict: concurrent.futures.Future[None] | None = None
        self._waiters = 0  # callers in wait() / await_() now (at most max_waiters)
        # The failure-ratio window; None (and the success path untouched) without a ratio.
        self.window = None if config.ratio is None else _Window(config.window, clock)
        emitter.emit(BreakerStateChanged(key=name, old=None, new=self._storage.state))
        self._link: BreakerLink | None = None
        self._lease: Callable[[], float] | None = None
        _LIVE.add(self)
        if shared is not None:  # last: the hook may apply the fleet's state at once
            self._link = shared.link(name, config, self.apply_shared)
            self._lease = getattr(self._link, "probe_wait", None)

    def _forked(self) -> None:
        """In a forked child: the parent's other threads (its waiters, a probe in flight,
        a holder of the lock) are not here, so nothing of theirs is kept."""
        self._lock = threading.Lock()
        self._waiters = 0
        self._verdict = None
        self._probe = 0  # a probe in another thread of the parent never reports here
        self._probe_since = None

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
                token = self._admit(leased=False)
            if token == _ASK_LEASE:  # off the lock: the fleet's answer may take a moment
                assert self._lease is not None
                wait = self._lease()
                if wait > 0:
                    raise CircuitOpenError(self.name, wait)
                with self._lock:
                    token = self._admit(leased=True)
            return token
        finally:
            self._flush()

    def _admit(self, *, leased: bool) -> int:
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
            wait = self._opened_at + self._interval - now
            if wait > 0:
                raise CircuitOpenError(self.name, wait)
            if self._lease is not None and not leased:  # one probe per reset in the fleet
                return _ASK_LEASE
            self._pb.half_open()
        elif self._probe and self._probe_since is not None:
            # Half-open with a probe in flight: only a probe silent for probe_timeout
            # is presumed lost (its token goes stale and this caller probes instead).
            lost = self._probe_since + config.probe_timeout - now
            if lost > 0:
                raise CircuitOpenError(self.name, min(self._interval, lost))
        self._tokens += 1
        self._probe = self._tokens
        self._probe_since = now
        return self._probe

    def wait(self, refused: CircuitOpenError, patience: float, sleep: Sleep) -> int:
        """After :meth:`allow` refused: wait up to ``patience`` seconds to be let through.

        Returns what :meth:`allow` returns; raises ``CircuitOpenError`` (``refused``, or
        a newer one) when the breaker will not let the caller through within
        ``patience`` (the caller's own deadline; it is capped at ``max_wait`` here) or
        the probe failed. Sleeps through ``sleep`` until the open interval ends, then
        blocks on the probe's verdict (never while holding the breaker's lock).
        """
        steps = self._admission(refused, patience)
        try:
            step = next(steps)
            while True:
                if isinstance(step, _Pause):
                    sleep(step.seconds)
                    step = next(steps)
                else:
                    done, _ = concurrent.futures.wait((step.future,), timeout=step.seconds)
                    step = steps.send(bool(done))
        except StopIteration as stop:
            token: int = stop.value
            return token
        finally:
            steps.close()
            self._flush()

    async def await_(self, refused: CircuitOpenError, patience: float, asleep: AsyncSleep) -> int:
        """:meth:`wait` for async callers (asyncio or trio): the loop is never blocked."""
        steps = self._admission(refused, patience)
        try:
            step = next(steps)
            while True:
                if isinstance(step, _Pause):
                    await asleep(step.seconds)
                    step = next(steps)
                else:
                    try:
                        await wait_future(step.future, step.seconds)
                    except TimeoutError:
                        step = steps.send(False)
                    else:
                        step = steps.send(True)
        except StopIteration as stop:
            token: int = stop.value
            return token
        finally:
            steps.close()
            self._flush()

    def _admission(
        self, refused: CircuitOpenError, patience: float
    ) -> Generator[_Pause | _Verdict, bool, int]:
        """The waiting of :meth:`wait` and :meth:`await_`, once: yields what to wait for.

        Returns the token :meth:`allow` would, or raises ``CircuitOpenError``. One pause
        at most (until the open interval ends), and only before any verdict was waited
        for; a verdict wait that ran out is not begun again: the waiting always ends.
        """
        with self._lock:
            if self._waiters >= self._config.max_waiters:
                raise refused  # enough callers wait already: fail fast
            self._waiters += 1
        try:
            return (yield from self._waiting(refused, patience))
        finally:
            with self._lock:
                self._waiters -= 1

    def _waiting(
        self, refused: CircuitOpenError, patience: float
    ) -> Generator[_Pause | _Verdict, bool, int]:
        """:meth:`_admission` once a place among the waiters is held."""
        clock = self._clock
        end = clock() + min(patience, self._config.max_wait)
        paused = heard = timed_out = False
        leased = False
        error = refused
        while True:
            step: _Pause | _Verdict | None = None
            with self._lock:
                try:
                    token = self._admit(leased=leased)
                except CircuitOpenError as exc:
                    error, token = exc, None
                    left = end - clock()
                    if self._forced == OPEN or left <= 0:
                        pass
                    elif self._storage.state == OPEN:
                        # The interval has yet to end: sleep through it, once, if it
                        # ends in time; after a verdict, OPEN means the probe failed.
                        pause = exc.retry_after + _PAST  # to just past the end
                        if not paused and not heard and pause < left:
                            step = _Pause(pause)
                    elif not timed_out:  # half-open, another caller's probe in flight
                        step = _Verdict(self._future(), left)
            leased = False
            if token == _ASK_LEASE:  # off the lock: the fleet's answer may take a moment
                assert self._lease is not None
                wait = self._lease()
                if wait <= 0:
                    leased = True
                    continue
                error = CircuitOpenError(self.name, wait)
                left = end - clock()
                if timed_out or left <= 0:
                    raise error
                with self._lock:  # another process probes: wait for the fleet's verdict
                    step = _Verdict(self._future(), min(wait, left))
            elif token is not None:
                return token
            if step is None:
                raise error
            if isinstance(step, _Pause):
                paused = True
                yield step
            else:
                heard = True
                if not (yield step):
                    timed_out = True

    def _future(self) -> concurrent.futures.Future[None]:
        """Under the lock: what the next change of state resolves."""
        verdict = self._verdict
        if verdict is None:
            verdict = self._verdict = concurrent.futures.Future()
        return verdict

    def _wake(self) -> None:
        """Under the lock, at a change of state (a verdict, a freed probe): wake the waiters."""
        verdict = self._verdict
        if verdict is not None:
            self._verdict = None
            verdict.set_result(None)

    def retry_after(self) -> float:
        """Seconds until this breaker lets a call through: 0 when closed or a probe is free."""
        config = self._config
        with self._lock:
            now = self._clock()
            state = self._storage.state
            if self._forced == OPEN:
                return config.reset
            if self._forced == CLOSED or state == CLOSED:
                return 0.0
            if state == OPEN:
                opened = now if self._opened_at is None else self._opened_at
                return max(0.0, opened + self._interval - now)
            if self._probe and self._probe_since is not None:  # half-open, probe in flight
                return max(0.0, min(self._interval, self._probe_since + config.probe_timeout - now))
            return 0.0

    def _claim(self, probe: int) -> bool:
        """Under the lock: True (and the slot freed) if ``probe`` is the probe in flight."""
        if probe and probe == self._probe:
            self._probe = 0
            self._probe_since = None
            self._wake()  # the waiters look again once the lock is let go
            return True
        return False

    def succeeded(self, probe: int) -> None:
        """Record a call that showed the destination well (``probe``: from :meth:`allow`)."""
        link = self._link
        if probe:
            closed = False
            with self._lock:
                if self._claim(probe):
                    if self._storage.state == HALF_OPEN:
                        self._storage.reset_counter()
                        self._opened_at = None
                        self._interval = self._config.min_reset
                        self._pb.close()
                        self._afresh()
                        closed = True
                elif self._storage.state == CLOSED:  # a stale probe: an ordinary call
                    self._storage.reset_counter()
                    if self.window is not None:
                        self.window.success()
            if closed and link is not None:
                link.closed()
            self._flush()
            return
        window = self.window
        if window is not None:  # counted even while open: the window starts afresh on close
            window.success()
        if self._storage.counter:
            with self._lock:
                if self._storage.state == CLOSED:
                    self._storage.reset_counter()
            if link is not None:
                link.succeeded()

    def failed(self, probe: int) -> None:
        """Record a failure that means the destination is unwell."""
        link = self._link
        tripped = counted = False
        with self._lock:
            state = self._storage.state
            if self._claim(probe):
                if state == HALF_OPEN:  # the probe failed: stay open twice as long
                    self._interval = min(self._config.reset, 2.0 * self._interval)
                    self._trip()
                    tripped = True
            elif state == CLOSED and self._forced != CLOSED:  # ordinary, or a stale probe
                self._storage.increment_counter()
                counted = True
                if self._storage.counter >= self._config.failures or self._over_ratio():
                    self._trip()
                    tripped = True
        if link is not None:
            if tripped:
                link.opened(probe=bool(probe))
            elif counted:
                link.failed()
        self._flush()

    def apply_shared(self, state: str, opened_ago: float) -> None:
        """The fleet's state changed: ``"open"`` (``opened_ago`` seconds ago) or ``"closed"``.

        Called by a :class:`SharedBreakers` hook from any thread. A pinned breaker
        (``force_open`` / ``force_closed``) ignores it.
        """
        with self._lock:
            if self._forced is not None:
                return
            self._wake()
            current = self._storage.state
            if state == OPEN:
                self._opened_at = self._clock() - max(opened_ago, 0.0)
                # Opened elsewhere: the process that opened it probes on its short,
                # growing interval and its verdict reaches every process; here the
                # breaker waits the full ``reset``, so the fleet does not probe at once.
                self._interval = self._config.reset
                if current != OPEN:
                    self._probe, self._probe_since = 0, None
                    self._pb.open()
                    self._afresh()
            elif state == CLOSED and current != CLOSED:
                self._storage.reset_counter()
                self._opened_at = None
                self._interval = self._config.min_reset
                self._probe, self._probe_since = 0, None
                self._pb.close()
                self._afresh()
        self._flush()

    def abandoned(self, probe: int) -> None:
        """The call ended without a verdict (cancelled, interrupted): free its probe slot."""
        if probe:
            with self._lock:
                self._claim(probe)

    def _over_ratio(self) -> bool:
        """Under the lock: count an unwell failure in the window; True if it should open."""
        window = self.window
        if window is None:
            return False
        calls, unwell = window.failure()
        ratio = self._config.ratio
        # A division, not ``unwell >= ratio * calls``: 0.7 * 10 is 7.000000000000001.
        return ratio is not None and calls >= self._config.min_calls and unwell / calls >= ratio

    def _afresh(self) -> None:
        """Under the lock, on opening or closing: the failure-ratio window starts afresh."""
        if self.window is not None:
            self.window.clear()

    def _trip(self) -> None:
        self._opened_at = self._clock()
        self._pb.open()
        self._afresh()

    def force(self, state: str | None) -> None:
        """Pin the breaker open or closed (``None`` releases it, closed)."""
        with self._lock:
            self._wake()
            self._forced = state
            self._probe = 0  # a probe in flight goes stale
            self._probe_since = None
            if state == OPEN:
                if self._storage.state != OPEN:
                    self._trip()
            elif self._storage.state != CLOSED:
                self._storage.reset_counter()
                self._interval = self._config.min_reset
                self._pb.close()
                self._afresh()
            else:
                self._storage.reset_counter()
                self._afresh()  # what was counted while pinned closed is dropped
        self._flush()

    def _flush(self) -> None:
        pending = self._relay.pending
        while pending:
            try:
                old, new = pending.pop(0)
            except IndexError:  # another thread emitted it
                return
            self._emitter.emit(BreakerStateChanged(key=self.name, old=old, new=new))


#: Every live breaker, for the fork hook (weakly: a breaker evicted from its policy goes).
_LIVE: Final[weakref.WeakSet[BreakerState]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for state in list(_LIVE):
        state._forked()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
