"""The errors ``outlast.aiohttp`` raises, beside aiohttp's own.

The tree::

    aiohttp.ClientConnectionError ─┐
                                   ├── outlast.aiohttp.CircuitOpenError   (breaker open)
    outlast.CircuitOpenError ──────┘

A name :class:`outlast.aiohttp.Resolver` cannot resolve is a ``socket.gaierror`` chained
to the :class:`~outlast.ResolveError`, which aiohttp's connector raises as
``aiohttp.ClientConnectorDNSError``, as it does for its own resolvers.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from outlast._exceptions import CircuitOpenError as _OutlastCircuitOpenError

__all__ = ["CircuitOpenError"]


class CircuitOpenError(aiohttp.ClientConnectionError, _OutlastCircuitOpenError):
    """The origin's circuit breaker is open: the request was not sent, no socket was touched.

    It is an ``aiohttp.ClientConnectionError`` (so ``except aiohttp.ClientError`` catches
    it) and an ``outlast.CircuitOpenError``: ``name`` is the origin
    (``scheme://host:port``), ``retry_after`` the seconds until a probe is let through.

    Added in 0.1.0.
    """

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        aiohttp.ClientConnectionError.__init__(
            self,
            f"circuit {name!r} is open: the request was not sent; "
            f"the next probe is allowed in {retry_after:.2f}s",
        )

    def __reduce__(self) -> Any:
        return type(self), (self.name, self.retry_after)
