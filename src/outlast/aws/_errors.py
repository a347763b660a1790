"""The errors ``outlast.aws`` raises, and where outlast's become botocore's.

The tree (beside botocore's own)::

    botocore.exceptions.EndpointConnectionError ─┐
                                                 ├── outlast.aws.CircuitOpenError
    outlast.CircuitOpenError ────────────────────┘

Inside a wrapped client's connections, a :class:`~outlast.ResolveError` becomes
urllib3's ``NameResolutionError`` and a failed dial ``NewConnectionError`` or
``ConnectTimeoutError``, which botocore turns into ``EndpointConnectionError`` /
``ConnectTimeoutError`` as it does without outlast; every cause stays chained.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import EndpointConnectionError

from outlast._exceptions import CircuitOpenError as _OutlastCircuitOpenError

__all__ = ["CircuitOpenError"]


class CircuitOpenError(EndpointConnectionError, _OutlastCircuitOpenError):  # type: ignore[misc]
    """The endpoint's circuit breaker is open: the request was not sent, no socket touched.

    It is a ``botocore.exceptions.EndpointConnectionError`` (so an existing
    ``except EndpointConnectionError`` or ``except botocore.exceptions.ConnectionError``
    catches it) and an ``outlast.CircuitOpenError``: ``name`` is the breaker's key
    (``service:region:scheme://host:port``), ``retry_after`` the seconds until a probe
    is let through, ``endpoint_url`` the URL that was not contacted.

    Added in 0.1.0.
    """

    fmt = (
        'Circuit {name!r} is open: "{endpoint_url}" was not contacted; '
        "the next probe is allowed in {retry_after:.2f}s"
    )

    def __init__(self, **kwargs: Any) -> None:
        # botocore's errors take keyword arguments only (and pickle by them); set what
        # outlast's base promises as attributes too.
        kwargs.setdefault("error", None)
        super().__init__(**kwargs)
        self.name: str = kwargs["name"]
        self.retry_after: float = kwargs["retry_after"]
        self.endpoint_url: str = kwargs["endpoint_url"]
