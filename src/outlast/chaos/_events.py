"""The chaos events: a component was built with chaos armed; a fault was injected.

Logged under the ``outlast.chaos`` logger, at WARNING: a rehearsal must never be
mistaken for a real outage, nor left armed unnoticed.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar, Final

from outlast._events import Event

__all__ = ["LOGGER", "ChaosArmed", "FaultInjected"]

LOGGER: Final = logging.getLogger("outlast.chaos")


@dataclasses.dataclass(frozen=True, slots=True)
class FaultInjected(Event):
    """``OUTLAST_CHAOS`` injected ``fault`` into an operation on ``host``; it was not real.

    ``layer`` is where it was injected (``dns``, ``connect``, ``http``); ``target`` the
    provider or address it stood in for; ``detail`` what the fault looked like.
    ``injected`` is always True, so a log query or exporter can tell rehearsed faults
    from real ones (the defences' own events that follow look like a real outage's).

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "chaos.injected"
    level: ClassVar[int] = logging.WARNING
    throttle: ClassVar[tuple[str, ...] | None] = ("fault", "layer", "host")

    fault: str
    layer: str
    host: str
    target: str
    detail: str
    injected: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class ChaosArmed(Event):
    """``component`` (``resolver``, ``transport``) was built with ``OUTLAST_CHAOS`` armed.

    ``plan`` is the variable's value: the faults that will be injected. Emitted once per
    component built, so a rehearsal left on is seen at start-up.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "chaos.armed"
    level: ClassVar[int] = logging.WARNING

    component: str
    plan: str

    def describe(self) -> str:
        return (
            f"{self.kind} component={self.component!r} plan={self.plan!r}: OUTLAST_CHAOS is "
            "armed, faults will be injected (a rehearsal, not an outage)"
        )
