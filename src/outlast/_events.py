"""The event stream every layer reports through.

An event is a frozen, slotted dataclass; a listener is any callable that takes one.
Each layer defines its own event classes (``outlast.dns`` the resolver's) and hands
them to an :class:`Emitter`, which calls the listeners and logs the event under the
layer's logger with the event's fields as structured ``extra``.

A listener that raises never breaks the call that emitted the event: its error is
logged and the remaining listeners still run.

Logging (not listeners) is rate-limited for events that repeat: an event class that
names its ``throttle`` fields is logged at most once per (kind, those fields' values)
per :data:`LOG_EVERY` seconds by one emitter; the next record logged for that key says
how many were left out since when (``... (49 more since 15:58:01 UTC not logged)``).
Listeners, and so metrics, still see every event.

This module imports nothing from outlast's layers.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import ClassVar, Final, Protocol

__all__ = ["LOG_EVERY", "Emitter", "Event", "Listener", "LogLimiter"]

#: Seconds between two log records of one repeated event (same kind and ``throttle`` key).
LOG_EVERY: Final = 60.0
#: Most keys one :class:`LogLimiter` remembers; the least recently logged is forgotten.
LIMITER_KEYS: Final = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """Base of every outlast event.

    ``kind`` is a stable dotted name (``dns.stale_served``) for dashboards and
    log queries; ``level`` is the logging level the event is logged at.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "event"
    level: ClassVar[int] = logging.DEBUG
    #: Fields whose values make one repeated event: its log records are rate-limited
    #: per (kind, values). None: every one is logged.
    throttle: ClassVar[tuple[str, ...] | None] = None

    def fields(self) -> dict[str, object]:
        """The event's fields as a plain dict (for logging ``extra`` and exporters)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def log_level(self) -> int:
        """The level this event is logged at: ``level``, unless the event knows better."""
        return self.level

    def describe(self) -> str:
        """One human line for logs."""
        body = " ".join(f"{key}={value!r}" for key, value in self.fields().items())
        return f"{self.kind} {body}".rstrip()


class Listener(Protocol):
    """Receives every event a component emits.

    Added in 0.1.0.
    """

    def __call__(self, event: Event, /) -> None: ...


class LogLimiter:
    """Decides which repeats of an event are logged: one per key per ``every`` seconds.

    :meth:`admit` returns None to leave a record out, or the number left out (and
    when the first of them was) to say in the record that is logged. Thread-safe;
    remembers at most ``max_keys`` keys. ``clock`` is monotonic, ``wall`` gives the
    time shown in the summary.
    """

    __slots__ = ("_clock", "_every", "_keys", "_lock", "_max_keys", "_wall")

    def __init__(
        self,
        every: float = LOG_EVERY,
        *,
        max_keys: int = LIMITER_KEYS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._every = every
        self._max_keys = max_keys
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        #: key -> [when last logged (clock), records left out since, wall time of the first]
        self._keys: OrderedDict[tuple[object, ...], list[float]] = OrderedDict()

    def admit(self, key: tuple[object, ...]) -> tuple[int, float] | None:
        """None: leave this record out. Else (how many were left out, wall time of the first)."""
        now = self._clock()
        with self._lock:
            held = self._keys.get(key)
            if held is not None and now - held[0] < self._every:
                if not held[1]:
                    held[2] = self._wall()
                held[1] += 1
                return None
            skipped, first = (0, 0.0) if held is None else (int(held[1]), held[2])
            self._keys[key] = [now, 0, 0.0]
            self._keys.move_to_end(key)
            if len(self._keys) > self._max_keys:
                self._keys.popitem(last=False)
            return skipped, first


class Emitter:
    """Calls listeners and logs events for one component.

    ``enabled`` is False when nothing would observe a DEBUG-level event, so hot paths
    can skip building one: ``if emitter.enabled: emitter.emit(CacheHit(...))``.
    Events at INFO or above should be emitted unconditionally. Log records of events
    with ``throttle`` fields go through ``limiter`` (a :class:`LogLimiter` of its own
    by default): listeners see every event, the log one per key per minute.
    """

    __slots__ = ("_limiter", "_listeners", "_logger")

    def __init__(
        self,
        logger: logging.Logger,
        listeners: Iterable[Listener] = (),
        *,
        limiter: LogLimiter | None = None,
    ) -> None:
        self._logger = logger
        self._listeners: tuple[Listener, ...] = tuple(listeners)
        self._limiter = LogLimiter() if limiter is None else limiter

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return self._listeners

    @property
    def enabled(self) -> bool:
        return bool(self._listeners) or self._logger.isEnabledFor(logging.DEBUG)

    def emit(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                self._logger.exception("outlast listener %r failed on %s", listener, event.kind)
        level = event.log_level()
        if self._logger.isEnabledFor(level):
            self._log(event, level)

    def _log(self, event: Event, level: int) -> None:
        skipped = 0
        first = 0.0
        if event.throttle is not None:  # decided before any formatting: a repeat costs little
            key = (event.kind, *[getattr(event, name, None) for name in event.throttle])
            admitted = self._limiter.admit(key)
            if admitted is None:
                return
            skipped, first = admitted
        message = event.describe()
        extra = {f"outlast_{key}": value for key, value in event.fields().items()}
        extra["outlast_event"] = event.kind
        if event.throttle is not None:
            extra["outlast_suppressed"] = skipped
            if skipped:
                since = time.strftime("%H:%M:%S", time.gmtime(first))
                message += f" ({skipped} more since {since} UTC not logged)"
        self._logger.log(level, "%s", message, extra=extra)
