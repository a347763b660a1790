"""The events of ``outlast.aws``: a call failed over to another client or region.

Logged under the ``outlast.aws`` logger with structured ``extra`` fields (the event's
kind in ``outlast_event``), and handed to the listeners given to :func:`outlast.aws.wrap`.
A wrapped client's address events (``http.address_failed``, ``http.address_ejected``,
...) are the dialler's, logged under the same logger.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar, Final

from outlast._events import Event

__all__ = ["LOGGER", "FailedOver", "FallbackFailed"]

LOGGER: Final = logging.getLogger("outlast.aws")


@dataclasses.dataclass(frozen=True, slots=True)
class FailedOver(Event):
    """A call on the allow-list left its primary endpoint for a fallback.

    ``operation`` is the API name (``GetItem``), ``service`` botocore's name for it
    (``dynamodb``), ``source`` and ``target`` are ``region (endpoint URL)`` of the
    primary and of the fallback tried, ``reason`` the primary's error.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "aws.failover"
    level: ClassVar[int] = logging.WARNING
    throttle: ClassVar[tuple[str, ...] | None] = ("service", "source", "target")

    operation: str
    service: str
    source: str
    target: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class FallbackFailed(Event):
    """A fallback could not be reached either; the next one (if any) is tried.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "aws.fallback_failed"
    level: ClassVar[int] = logging.WARNING
    throttle: ClassVar[tuple[str, ...] | None] = ("service", "target")

    operation: str
    service: str
    target: str
    reason: str
