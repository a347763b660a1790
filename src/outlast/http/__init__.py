"""outlast.http: httpx transports and clients that outlast the provider's failures.

Owns :class:`Transport` / :class:`AsyncTransport` (httpx transports whose connections
go through an httpcore network backend that resolves with :class:`outlast.Resolver`,
dials the resolved addresses with failover, ejection and Happy Eyeballs, and whose
requests go through an :class:`outlast.Policy` per origin), :class:`Client` /
:class:`AsyncClient` (httpx clients using them, proxies from the environment kept),
the HTTP classifiers for the policy, the translation of outlast's errors into httpx's
and the ``outlast.http`` events.

Imports httpx/httpcore and the layers below (``outlast.dns``, ``outlast.policy``,
``outlast._dial``, ``outlast._*``). It must not import botocore or ``outlast.aws``.
"""

from __future__ import annotations

from outlast._dial import DEFAULT_EJECT_FOR
from outlast.http._backend import HAPPY_EYEBALLS_DELAY
from outlast.http._classify import (
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    classify_error,
    classify_result,
    replayable,
    retry_safe,
)
from outlast.http._client import AsyncClient, Client
from outlast.http._errors import CircuitOpenError
from outlast.http._events import (
    AddressEjected,
    AddressFailed,
    AddressRestored,
    FailedOver,
    RequestFinished,
)
from outlast.http._transport import AsyncTransport, Transport

__all__ = [
    "AddressEjected",
    "AddressFailed",
    "AddressRestored",
    "AsyncClient",
    "AsyncTransport",
    "CircuitOpenError",
    "Client",
    "DEFAULT_EJECT_FOR",
    "FailedOver",
    "HAPPY_EYEBALLS_DELAY",
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "RequestFinished",
    "Transport",
    "classify_error",
    "classify_result",
    "replayable",
    "retry_safe",
]
