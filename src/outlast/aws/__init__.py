"""outlast.aws: one call makes a boto3/botocore client outlast DNS and endpoint faults.

Needs the extra ``outlast[aws]`` (boto3); aiobotocore clients need
``outlast[aiobotocore]``. This package is the only place outlast imports boto3,
botocore or aiobotocore; ``import outlast`` does not import it.

Owns :func:`wrap` and :func:`client`: a wrapped client resolves its endpoint with
:class:`outlast.Resolver` on its own HTTP session (address failover and ejection, TLS
and SigV4 keeping the hostname), retries in one layer (outlast's :class:`~outlast.Policy`
with botocore's judgement of what is retryable; botocore's own retries off), keeps a
breaker per endpoint (while open, calls raise :class:`CircuitOpenError`, a
``botocore.exceptions.EndpointConnectionError``, without touching the network), and
sends allow-listed reads (an explicit list per service; never a strongly consistent
read unless opted in) to fallback clients and regions when the primary cannot be
reached. It imports the layers below (``outlast.dns``, ``outlast.policy``,
``outlast._dial``, ``outlast._*``); nothing below imports it.
"""

from __future__ import annotations

from outlast.aws._errors import CircuitOpenError
from outlast.aws._events import FailedOver, FallbackFailed
from outlast.aws._failover import (
    CONSISTENT_READS,
    DEFAULT_FAILOVER_OPERATIONS,
    FAILOVER_ERRORS,
    NOT_FOUND_CODES,
    consistent_read,
    read_only,
)
from outlast.aws._retries import classify_error, classify_result, default_policy
from outlast.aws._wrap import Wrapped, client, wrap, wrapped

__all__ = [
    "CONSISTENT_READS",
    "DEFAULT_FAILOVER_OPERATIONS",
    "FAILOVER_ERRORS",
    "NOT_FOUND_CODES",
    "CircuitOpenError",
    "FailedOver",
    "FallbackFailed",
    "Wrapped",
    "classify_error",
    "classify_result",
    "client",
    "consistent_read",
    "default_policy",
    "read_only",
    "wrap",
    "wrapped",
]
