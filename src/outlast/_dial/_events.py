"""The dialler's events: addresses failing, ejected, restored, failed over to.

Their kinds and logger (``outlast.http``) are the ones users have always seen: every
integration (httpx, botocore, requests, aiohttp) dials through :mod:`outlast._dial`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar, Final

from outlast._events import Event

__all__ = ["LOGGER", "AddressEjected", "AddressFailed", "AddressRestored", "FailedOver"]

LOGGER: Final = logging.getLogger("outlast.http")


@dataclasses.dataclass(frozen=True, slots=True)
class AddressFailed(Event):
    """One address of ``host`` failed: its connect (refused, timed out, unreachable), its TLS
    handshake, or a fresh connection through it before the first response byte.

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "http.address_failed"
    level: ClassVar[int] = logging.INFO
    throttle: ClassVar[tuple[str, ...] | None] = ("host", "address", "port")

    host: str
    address: str
    port: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class AddressEjected(Event):
    """An address is tried last for ``seconds`` because it failed (see :class:`AddressFailed`).

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "http.address_ejected"
    level: ClassVar[int] = logging.WARNING
    throttle: ClassVar[tuple[str, ...] | None] = ("host", "address", "port")

    host: str
    address: str
    port: int
    seconds: float


@dataclasses.dataclass(frozen=True, slots=True)
class AddressRestored(Event):
    """An ejected address served a response again and is back in its place.

    A TCP connect alone never restores an address (a hung process accepts TCP).

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "http.address_restored"
    level: ClassVar[int] = logging.INFO

    host: str
    address: str
    port: int


@dataclasses.dataclass(frozen=True, slots=True)
class FailedOver(Event):
    """A connection was made to an address other than the first one planned.

    ``position`` is the address's place in the dial (2 for the second).

    Added in 0.1.0.
    """

    kind: ClassVar[str] = "http.failed_over"
    level: ClassVar[int] = logging.INFO
    throttle: ClassVar[tuple[str, ...] | None] = ("host", "address", "port")

    host: str
    address: str
    port: int
    position: int
