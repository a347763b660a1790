"""The errors ``outlast.requests`` raises, beside requests' own.

The tree::

    requests.ConnectionError ─┐
                              ├── outlast.requests.CircuitOpenError   the origin's breaker is open
    outlast.CircuitOpenError ─┘

Inside a connection, a :class:`~outlast.ResolveError` becomes urllib3's
``NameResolutionError`` and a failed dial ``NewConnectionError`` / ``ConnectTimeoutError``,
which requests turns into ``requests.ConnectionError`` / ``requests.ConnectTimeout`` as
it does for the system resolver; every cause stays chained.
"""

from __future__ import annotations

from typing import Any

import requests

from outlast._exceptions import CircuitOpenError as _OutlastCircuitOpenError

__all__ = ["CircuitOpenError"]


class CircuitOpenError(requests.ConnectionError, _OutlastCircuitOpenError):
    """The origin's circuit breaker is open: the request was not sent, no socket was touched.

    It is a ``requests.ConnectionError`` (so ``except requests.RequestException``
    catches it) and an ``outlast.CircuitOpenError``: ``name`` is the origin
    (``scheme://host:port``), ``retry_after`` the seconds until a probe is let through,
    ``request`` the ``PreparedRequest`` that was not sent.

    Added in 0.1.0.
    """

    def __init__(self, name: str, retry_after: float, *, request: Any = None) -> None:
        self.name = name
        self.retry_after = retry_after
        # The two bases' __init__ take different arguments; set what each expects.
        requests.ConnectionError.__init__(
            self,
            f"circuit {name!r} is open: the request was not sent; "
            f"the next probe is allowed in {retry_after:.2f}s",
            request=request,
        )

    def __reduce__(self) -> Any:
        return _rebuild, (self.name, self.retry_after)


def _rebuild(name: str, retry_after: float) -> CircuitOpenError:
    return CircuitOpenError(name, retry_after)
