"""Dialling a list of resolved addresses: order, failover with a shared timeout, ejection.

Nothing here knows HTTP. :class:`Outliers` remembers addresses that refused or timed
out and puts them last for a while; :func:`plan` orders an answer's addresses for one
dial (families interleaved, ejected ones last); :func:`dial_serial` tries addresses
one after another within one connect timeout, slicing it the way Go's dialer does;
:func:`outlast._dial.create_connection` races them over plain sockets instead.

This module must not import httpx or httpcore: every integration (httpx, botocore and
requests under urllib3, aiohttp) dials through it.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import cachetools

from outlast._dial._events import AddressEjected, AddressFailed, AddressRestored, FailedOver
from outlast._events import Emitter
from outlast._exceptions import ConfigError

__all__ = [
    "DEFAULT_EJECT_FOR",
    "MIN_SLICE",
    "AllAddressesFailed",
    "Outliers",
    "dial_serial",
    "interleave",
    "plan",
]

T = TypeVar("T")

#: Seconds an address that refused or timed out stays at the back of the line.
DEFAULT_EJECT_FOR: Final = 30.0
#: The least time one address of several gets from a shared connect timeout (Go: 2 s).
MIN_SLICE: Final = 2.0
_MAX_TRACKED: Final = 4096


def interleave(addresses: Sequence[str]) -> list[str]:
    """``addresses`` with families alternated (RFC 8305 section 4), starting with the first's.

    The order inside each family is kept.
    """
    if len(addresses) < 2:
        return list(addresses)
    first_v6 = ":" in addresses[0]
    same = [a for a in addresses if (":" in a) == first_v6]
    other = [a for a in addresses if (":" in a) != first_v6]
    if not other:
        return list(addresses)
    out: list[str] = []
    for i in range(max(len(same), len(other))):
        if i < len(same):
            out.append(same[i])
        if i < len(other):
            out.append(other[i])
    return out


class Outliers:
    """Addresses ejected after a refused or timed-out connect, per (address, port).

    An ejected address is not removed: :func:`plan` puts it after every address that
    is not ejected, so a dial still reaches it when everything else has failed (no
    answer ever loses every address). It comes back to its place after ``eject_for``
    seconds, or at once when a connection through it has served a response (a TCP
    connect alone does not restore it: a hung process accepts TCP). Thread-safe; bounded.

    Added in 0.1.0.
    """

    __slots__ = ("_clock", "_eject_for", "_ejected", "_lock")

    def __init__(
        self, *, eject_for: float = DEFAULT_EJECT_FOR, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if (
            isinstance(eject_for, bool)
            or not isinstance(eject_for, (int, float))
            or math.isnan(eject_for)  # nan compares false to everything: never ejected
            or eject_for < 0
        ):
            raise ConfigError("eject_for", eject_for, "a number of seconds (0 or more)")
        self._eject_for = float(eject_for)
        self._clock = clock
        self._lock = threading.Lock()
        self._ejected: cachetools.LRUCache[tuple[str, int], float] = cachetools.LRUCache(
            maxsize=_MAX_TRACKED
        )

    @property
    def eject_for(self) -> float:
        """Seconds an address stays ejected."""
        return self._eject_for

    def split(self, addresses: Sequence[str], port: int) -> tuple[list[str], list[str]]:
        """``addresses`` as (not ejected, ejected now), each keeping its order."""
        if not self._ejected:
            return list(addresses), []
        now = self._clock()
        with self._lock:
            late = {a for a in addresses if self._ejected.get((a, port), 0.0) > now}
        if not late:
            return list(addresses), []
        return [a for a in addresses if a not in late], [a for a in addresses if a in late]

    def failed(self, address: str, port: int) -> bool:
        """Eject (address, port); True if it was not ejected already."""
        if self._eject_for <= 0:
            return False
        now = self._clock()
        with self._lock:
            fresh = self._ejected.get((address, port), 0.0) <= now
            self._ejected[(address, port)] = now + self._eject_for
        return fresh

    def succeeded(self, address: str, port: int) -> bool:
        """Restore (address, port); True if it was ejected."""
        if not self._ejected:
            return False
        with self._lock:
            until = self._ejected.pop((address, port), None)
        return until is not None and until > self._clock()


def plan(addresses: Sequence[str], port: int, outliers: Outliers) -> list[str]:
    """The order to dial an answer's addresses in: healthy ones interleaved, ejected last."""
    healthy, late = outliers.split(addresses, port)
    return interleave(healthy) + interleave(late)


class AllAddressesFailed(Exception):
    """Every address of a name failed to connect.

    ``errors`` pairs each address tried with its error; ``timed_out`` is True when the
    shared connect timeout ran out (the caller raises its library's timeout error).
    """

    def __init__(
        self, host: str, port: int, errors: Sequence[tuple[str, Exception]], timed_out: bool
    ) -> None:
        self.host = host
        self.port = port
        self.errors = tuple(errors)
        self.timed_out = timed_out
        tried = "; ".join(f"{address}: {_reason(exc)}" for address, exc in errors) or "none"
        why = "the connect timeout ran out" if timed_out else "every address failed"
        super().__init__(
            f"cannot connect to {host!r} port {port}: {why} "
            f"(tried {len(errors)} of its addresses: {tried})"
        )


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """Where a dial reports what happened: the emitter and the name being dialled."""

    emitter: Emitter
    host: str
    outliers: Outliers

    def failed(self, address: str, port: int, exc: Exception, *, eject: bool = True) -> None:
        """``address`` failed before serving a response: eject it (unless ``eject`` is False)."""
        self.emitter.emit(AddressFailed(self.host, address, port, _reason(exc)))
        if eject and self.outliers.failed(address, port):
            self.emitter.emit(AddressEjected(self.host, address, port, self.outliers.eject_for))

    def connected(self, address: str, port: int, position: int) -> None:
        """A connection to ``address`` was made; an ejected address stays ejected until served."""
        if position > 0:
            self.emitter.emit(FailedOver(self.host, address, port, position + 1))

    def served(self, address: str, port: int) -> None:
        """A connection through ``address`` served a response: restore it if it was ejected."""
        if self.outliers.succeeded(address, port):
            self.emitter.emit(AddressRestored(self.host, address, port))


def dial_serial(
    addresses: Sequence[str],
    port: int,
    timeout: float | None,
    connect: Callable[[str, float | None], T],
    failures: tuple[type[Exception], ...],
    report: Report,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``connect(address, timeout)`` for each address until one succeeds.

    The whole dial is bounded by ``timeout`` (None: unbounded). Each address gets the
    remaining time divided by the addresses left, but at least :data:`MIN_SLICE`
    seconds (or what remains), so one silent address cannot spend all of it. Errors
    in ``failures`` eject the address and move on; any other error propagates. Raises
    :class:`AllAddressesFailed` when no address connected.
    """
    if not addresses:
        raise AllAddressesFailed(report.host, port, (), timed_out=False)
    deadline = None if timeout is None else clock() + timeout
    errors: list[tuple[str, Exception]] = []
    for position, address in enumerate(addresses):
        if deadline is None:
            budget: float | None = None
        else:
            remaining = deadline - clock()
            if remaining <= 0:
                raise AllAddressesFailed(report.host, port, errors, timed_out=True)
            left = len(addresses) - position
            budget = remaining if left == 1 else min(remaining, max(remaining / left, MIN_SLICE))
        try:
            result = connect(address, budget)
        except failures as exc:
            errors.append((address, exc))
            report.failed(address, port, exc)
            continue
        report.connected(address, port, position)
        return result
    timed_out = deadline is not None and clock() >= deadline
    raise AllAddressesFailed(report.host, port, errors, timed_out=timed_out)
