"""What an aiohttp attempt's outcome means to the policy: retry it or not, count it or not.

``outlast.http``'s rules in aiohttp's exception types. Connect-phase failures
(``ClientConnectorError`` and its DNS subclass, ``ConnectionTimeoutError``) never reached
the server, so they are retried for every method; a certificate that fails verification
(``ClientConnectorCertificateError``) is not retried, and a proxy that refuses
(``ClientProxyConnectionError``, ``ClientHttpProxyError``) is neither retried nor held
against the origin. Read-phase failures (``ServerDisconnectedError``, ``ClientOSError``,
``SocketTimeoutError``) and 500/502/503/504 are retried only when repeating is safe: an
idempotent method or an ``Idempotency-Key`` header, and a body that is empty or bytes.
429 and 503 pass ``Retry-After`` as the delay; 429 is not held against the breaker;
every 5xx but 501 and 505 is.
A call that outlives the caller's deadline (aiohttp's ``total`` timer, or a retry cut
at the deadline: ``asyncio.TimeoutError`` / ``aiohttp.ServerTimeoutError``) is the
destination's failure, counted and not retried (no time is left); a retry cut before it
was sent (the deadline passed during the backoff) is neutral. Any other error
(one this module does not know) is neutral, as in ``outlast.http``: not retried, not
counted for or against the origin, and a half-open probe that ends so is freed.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Final

import aiohttp
import aiohttp.payload

from outlast.policy import Decision, Outcome, Phase
from outlast.policy._http import IDEMPOTENT_METHODS, RETRY_STATUSES, judge_status

__all__ = [
    "CURRENT",
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "classify_error",
    "classify_result",
    "hold",
    "never_sent",
    "request_of",
    "retry_safe",
]

#: The request the current task's outlast middleware is sending: its attempts'
#: classifiers read it (aiohttp's errors and responses do not carry the request's body).
CURRENT: Final[contextvars.ContextVar[Any]] = contextvars.ContextVar(
    "outlast.aiohttp.request", default=None
)

_PROXY_ERRORS: Final = (aiohttp.ClientProxyConnectionError, aiohttp.ClientHttpProxyError)
_CONNECT_ERRORS: Final = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_READ_ERRORS: Final = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.SocketTimeoutError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientConnectionResetError,
)
#: The caller's deadline passed: aiohttp's ``total`` timer (``asyncio.TimeoutError``,
#: which is ``TimeoutError`` from Python 3.11) or a retry cut at the deadline.
_DEADLINE_ERRORS: Final = (asyncio.TimeoutError, TimeoutError, aiohttp.ServerTimeoutError)
_TIMED_OUT: Final = Decision(retry=False, unwell=True)


def retry_safe(request: Any) -> bool:
    """Whether an ``aiohttp.ClientRequest`` the server may have seen can be sent again.

    Added in 0.1.0.
    """
    if request is None:
        return False
    idempotent = request.method in IDEMPOTENT_METHODS or "Idempotency-Key" in request.headers
    body = request.body
    return idempotent and (body == b"" or isinstance(body, aiohttp.payload.BytesPayload))


def request_of(carrier: Any) -> Any:
    """The ``aiohttp.ClientRequest`` an attempt's error or response came from, or None."""
    request = getattr(carrier, "outlast_request", None)
    return request if request is not None else CURRENT.get()


def hold(response: Any) -> Any:
    """Keep a response that may be retried on its request (the policy's sleep frees it
    before the retry: :func:`outlast.aiohttp._session.release`); return the request.

    A response still held from an earlier attempt (testing mode skips the sleep that
    frees it) is freed now.
    """
    request = CURRENT.get()
    if request is None:
        return getattr(response, "outlast_request", None)
    held = request.__dict__
    previous = held.get("outlast_last")
    if previous is not None and previous is not response:
        previous.release()
        held["outlast_freed"] = previous
    held["outlast_last"] = response
    return request


def never_sent(error: BaseException | None) -> bool:
    """Whether ``error`` failed the connect phase: the request never left."""
    return isinstance(error, _CONNECT_ERRORS) and not isinstance(error, _PROXY_ERRORS)


def classify_error(outcome: Outcome, /) -> Decision:
    """The policy's classifier for errors an outlast session's attempt raised.

    Added in 0.1.0.
    """
    error = outcome.error
    if isinstance(error, _PROXY_ERRORS):
        return Decision.NEUTRAL  # the proxy's answer: not the target's health, either way
    if isinstance(
        error, (aiohttp.ClientConnectorCertificateError, aiohttp.ServerFingerprintMismatch)
    ):
        return Decision(retry=False, unwell=True)
    if never_sent(error):
        return Decision.failure(Phase.CONNECT, idempotent=False)
    if isinstance(error, _READ_ERRORS):
        return Decision.failure(Phase.READ, idempotent=retry_safe(request_of(error)))
    if isinstance(error, _DEADLINE_ERRORS):
        # A retry cut before it was sent (the deadline passed in the backoff) says nothing.
        return Decision.NEUTRAL if getattr(error, "outlast_unsent", False) else _TIMED_OUT
    if error is None:
        return Decision.ACCEPT
    return Decision.NEUTRAL  # not known here: says nothing of the destination, either way


def classify_result(outcome: Outcome, /) -> Decision:
    """The policy's classifier for ``aiohttp.ClientResponse`` values.

    Added in 0.1.0.
    """
    response = outcome.result
    if not isinstance(response, aiohttp.ClientResponse):
        return Decision.ACCEPT
    status = response.status
    if status < 429 or 429 < status < 500:  # judge_status's first rule, without its frame
        return Decision.ACCEPT
    request = hold(response) if status in RETRY_STATUSES else None
    return judge_status(
        status,
        lambda: retry_safe(request),
        lambda: response.headers.get("Retry-After"),
    )
