"""The errors ``outlast.http`` raises, and the one boundary where outlast's become httpx's.

The tree (beside httpx's own)::

    httpx.ConnectError ─┐
                        ├── outlast.http.CircuitOpenError   the origin's breaker is open
    outlast.CircuitOpenError ─┘

Inside the network backend, a :class:`~outlast.ResolveError` and a failed dial become
``httpcore.ConnectError`` / ``httpcore.ConnectTimeout``, which httpx's transport maps to
``httpx.ConnectError`` / ``httpx.ConnectTimeout``; every cause stays chained.
"""

from __future__ import annotations

from typing import Any

import httpx

from outlast._exceptions import CircuitOpenError as _OutlastCircuitOpenError

__all__ = ["CircuitOpenError"]


class CircuitOpenError(httpx.ConnectError, _OutlastCircuitOpenError):
    """The origin's circuit breaker is open: the request was not sent, no socket was touched.

    It is an ``httpx.ConnectError`` (so ``except httpx.TransportError`` catches it) and
    an ``outlast.CircuitOpenError`` (``name`` is the origin, ``retry_after`` the seconds
    until the breaker lets a probe through).

    Added in 0.1.0.
    """

    def __init__(self, name: str, retry_after: float, *, request: httpx.Request) -> None:
        self.name = name
        self.retry_after = retry_after
        # The two bases' __init__ take different arguments; set what each expects.
        Exception.__init__(
            self,
            f"circuit {name!r} is open: the request was not sent; "
            f"the next probe is allowed in {retry_after:.2f}s",
        )
        self.request = request

    def __reduce__(self) -> tuple[Any, ...]:
        # Outlast's base pickles (name, retry_after) alone, and this __init__ needs the
        # request too: without it an error raised in a worker process cannot come back.
        return _rebuild, (type(self), self.name, self.retry_after, self._request)


def _rebuild(
    cls: type[CircuitOpenError], name: str, retry_after: float, request: httpx.Request | None
) -> CircuitOpenError:
    error = cls.__new__(cls)
    if request is None:  # httpx's errors may be built without one
        _OutlastCircuitOpenError.__init__(error, name, retry_after)
        error._request = None
        return error
    CircuitOpenError.__init__(error, name, retry_after, request=request)
    return error
