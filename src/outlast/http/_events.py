"""The events of ``outlast.http``: addresses failing, ejected, restored, failed over to.

They are emitted by the dialler every integration shares (:mod:`outlast._dial`) and
re-exported here, where users of the httpx transports look for them. Logged under the
``outlast.http`` logger with structured ``extra`` fields, and handed to the listeners
given to a transport (``Transport(listeners=[...])``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from outlast._dial import (
    LOGGER,
    AddressEjected,
    AddressFailed,
    AddressRestored,
    FailedOver,
)
from outlast._events import Event

__all__ = [
    "LOGGER",
    "AddressEjected",
    "AddressFailed",
    "AddressRestored",
    "FailedOver",
    "RequestFinished",
]


@dataclasses.dataclass(frozen=True, slots=True)
class RequestFinished(Event):
    """A request through an outlast transport got its response headers, or failed.

    ``origin`` is ``scheme://host:port``; ``status`` the final status (0 when no
    response came: an error was raised); ``status_class`` ``"2xx"`` ... ``"5xx"`` or
    ``"error"``; ``seconds`` from the transport being handed the request to the response
    headers or the error, retries and their backoff included. DEBUG, and built only
    when a listener is installed or DEBUG is enabled for ``outlast.http``.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "http.request"

    origin: str
    method: str
    status: int
    status_class: str
    seconds: float

    @classmethod
    def of(cls, origin: str, method: str, status: int, seconds: float) -> RequestFinished:
        """The event for a response with ``status`` (0: an error instead)."""
        return cls(origin, method, status, f"{status // 100}xx" if status else "error", seconds)
