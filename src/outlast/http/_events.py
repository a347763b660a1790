"""The events of ``outlast.http``: addresses failing, ejected, restored, failed over to.

They are emitted by the dialler every integration shares (:mod:`outlast._dial`) and
re-exported here, where users of the httpx transports look for them. Logged under the
``outlast.http`` logger with structured ``extra`` fields, and handed to the listeners
given to a transport (``Transport(listeners=[...])``).
"""

from __future__ import annotations

from outlast._dial import (
    LOGGER,
    AddressEjected,
    AddressFailed,
    AddressRestored,
    FailedOver,
)

__all__ = ["LOGGER", "AddressEjected", "AddressFailed", "AddressRestored", "FailedOver"]
