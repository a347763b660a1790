"""Fleet mode's events, logged under the ``outlast.fleet`` logger."""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar, Final

from outlast._events import Event

__all__ = ["LOGGER", "FleetAnswerFound", "FleetRestored", "FleetUnavailable"]

LOGGER: Final = logging.getLogger("outlast.fleet")


@dataclasses.dataclass(frozen=True, slots=True)
class FleetUnavailable(Event):
    """Redis did not answer in time or refused; outlast goes on locally and retries later.

    ``url`` has its password masked; ``retry_in`` is the seconds before the next try.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "fleet.unavailable"
    level: ClassVar[int] = logging.WARNING
    throttle: ClassVar[tuple[str, ...] | None] = ("url",)
    url: str
    error: str
    retry_in: float


@dataclasses.dataclass(frozen=True, slots=True)
class FleetRestored(Event):
    """Redis answers again after ``down_for`` seconds; sharing resumes. Added in 0.1.0."""

    kind: ClassVar[str] = "fleet.restored"
    level: ClassVar[int] = logging.INFO
    url: str
    down_for: float


@dataclasses.dataclass(frozen=True, slots=True)
class FleetAnswerFound(Event):
    """A resolver that held nothing for ``host`` got the fleet's last-known-good answer.

    ``age`` is the seconds since a process of the fleet learned it. Added in 0.1.0.
    """

    kind: ClassVar[str] = "fleet.answer_found"
    level: ClassVar[int] = logging.INFO
    host: str
    addresses: tuple[str, ...]
    age: float
