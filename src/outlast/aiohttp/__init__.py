"""outlast.aiohttp: aiohttp sessions that resolve and retry through outlast.

Owns :class:`Resolver` (an ``aiohttp.abc.AbstractResolver`` answered by
:class:`outlast.Resolver`: last-known-good addresses, hedging, distrust of a sudden
empty answer), :func:`ClientSession` (an ``aiohttp.ClientSession`` with that resolver,
aiohttp's own DNS cache off, and an :class:`outlast.Policy` per origin in a client
middleware), :func:`middleware`, the classifiers and the :class:`CircuitOpenError`
raised through aiohttp. Needs ``outlast[aiohttp]`` (aiohttp 3.12 or later, for client
middlewares).

Imports aiohttp and the layers below (``outlast.dns``, ``outlast.policy``,
``outlast._dial``, ``outlast._*``). It must not import httpx, botocore, requests or the
other integrations.
"""

from __future__ import annotations

from outlast.aiohttp._classify import (
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    classify_error,
    classify_result,
    retry_safe,
)
from outlast.aiohttp._errors import CircuitOpenError
from outlast.aiohttp._resolver import Resolver
from outlast.aiohttp._session import POLICY_NAME, ClientSession, middleware

__all__ = [
    "CircuitOpenError",
    "ClientSession",
    "IDEMPOTENT_METHODS",
    "POLICY_NAME",
    "RETRY_STATUSES",
    "Resolver",
    "classify_error",
    "classify_result",
    "middleware",
    "retry_safe",
]
