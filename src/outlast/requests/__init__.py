"""outlast.requests: requests sessions (and the Azure and Google SDKs on them) through outlast.

Owns :class:`HTTPAdapter` (requests' adapter whose connections resolve with
:class:`outlast.Resolver` and dial the resolved addresses with failover and ejection,
and whose requests go through an :class:`outlast.Policy` per origin), :class:`Session`
(a ``requests.Session`` with those adapters), :func:`mount` (instruments an existing
session, such as google-auth's ``AuthorizedSession``), the classifiers and the
:class:`CircuitOpenError` raised through requests. Needs ``outlast[requests]``.

Imports requests/urllib3 and the layers below (``outlast.dns``, ``outlast.policy``,
``outlast._dial``, ``outlast._*``). It must not import httpx, botocore, aiohttp or the
other integrations.
"""

from __future__ import annotations

from outlast.requests._adapter import POLICY_NAME, HTTPAdapter, Session, attempts_cap, mount
from outlast.requests._classify import (
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    classify_error,
    classify_result,
    retry_safe,
)
from outlast.requests._errors import CircuitOpenError

__all__ = [
    "CircuitOpenError",
    "HTTPAdapter",
    "IDEMPOTENT_METHODS",
    "POLICY_NAME",
    "RETRY_STATUSES",
    "Session",
    "attempts_cap",
    "classify_error",
    "classify_result",
    "mount",
    "retry_safe",
]
