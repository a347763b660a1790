"""outlast._dial: socket dialling shared by every integration.

Owns the order in which a name's addresses are tried (families interleaved, ejected
ones last), Happy Eyeballs racing (RFC 8305, sync: :func:`race`), failover within one connect
timeout, outlier ejection and the events that
say so. It knows no HTTP library: ``outlast.http`` (httpcore), ``outlast.aws``
(botocore's urllib3) and the other integrations build on it.

Imports ``outlast._events`` and ``outlast._exceptions`` only.
"""

from __future__ import annotations

from outlast._dial._core import (
    DEFAULT_EJECT_FOR,
    MIN_SLICE,
    AllAddressesFailed,
    Outliers,
    Report,
    dial_serial,
    interleave,
    plan,
)
from outlast._dial._events import (
    LOGGER,
    AddressEjected,
    AddressFailed,
    AddressRestored,
    FailedOver,
)
from outlast._dial._race import (
    HAPPY_EYEBALLS_DELAY,
    TLS,
    Dialled,
    certificate_error,
    create_connection,
    race,
)

__all__ = [
    "DEFAULT_EJECT_FOR",
    "HAPPY_EYEBALLS_DELAY",
    "LOGGER",
    "MIN_SLICE",
    "AddressEjected",
    "AddressFailed",
    "AddressRestored",
    "AllAddressesFailed",
    "Dialled",
    "FailedOver",
    "Outliers",
    "Report",
    "TLS",
    "certificate_error",
    "create_connection",
    "dial_serial",
    "interleave",
    "plan",
    "race",
]
