"""The event stream every layer reports through.

An event is a frozen, slotted dataclass; a listener is any callable that takes one.
Each layer defines its own event classes (``outlast.dns`` the resolver's) and hands
them to an :class:`Emitter`, which calls the listeners and logs the event under the
layer's logger with the event's fields as structured ``extra``.

A listener that raises never breaks the call that emitted the event: its error is
logged and the remaining listeners still run.

This module imports nothing from outlast's layers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import ClassVar, Protocol

__all__ = ["Emitter", "Event", "Listener"]


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """Base of every outlast event.

    ``kind`` is a stable dotted name (``dns.stale_served``) for dashboards and
    log queries; ``level`` is the logging level the event is logged at.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "event"
    level: ClassVar[int] = logging.DEBUG

    def fields(self) -> dict[str, object]:
        """The event's fields as a plain dict (for logging ``extra`` and exporters)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def describe(self) -> str:
        """One human line for logs."""
        body = " ".join(f"{key}={value!r}" for key, value in self.fields().items())
        return f"{self.kind} {body}".rstrip()


class Listener(Protocol):
    """Receives every event a component emits.

    Added in 0.1.0.
    """

    def __call__(self, event: Event, /) -> None: ...


class Emitter:
    """Calls listeners and logs events for one component.

    ``enabled`` is False when nothing would observe a DEBUG-level event, so hot paths
    can skip building one: ``if emitter.enabled: emitter.emit(CacheHit(...))``.
    Events at INFO or above should be emitted unconditionally.
    """

    __slots__ = ("_listeners", "_logger")

    def __init__(self, logger: logging.Logger, listeners: Iterable[Listener] = ()) -> None:
        self._logger = logger
        self._listeners: tuple[Listener, ...] = tuple(listeners)

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
        if self._logger.isEnabledFor(event.level):
            extra = {f"outlast_{key}": value for key, value in event.fields().items()}
            extra["outlast_event"] = event.kind
            self._logger.log(event.level, "%s", event.describe(), extra=extra)
