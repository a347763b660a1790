"""The one chaos event: a fault was injected. Logged under the ``outlast.chaos`` logger."""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar, Final

from outlast._events import Event

__all__ = ["LOGGER", "FaultInjected"]

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
    level: ClassVar[int] = logging.INFO

    fault: str
    layer: str
    host: str
    target: str
    detail: str
    injected: bool = True
