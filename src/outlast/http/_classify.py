"""What an HTTP attempt's outcome means to the policy: retry it or not, count it or not.

Connect-phase failures (the name did not resolve, every address refused or timed out,
the TLS handshake broke off) never reached the server, so they are retried for every
method. A proxy that refuses the tunnel (``httpx.ProxyError``: 407, 403 on CONNECT)
and a wait for a free pool connection that timed out (``httpx.PoolTimeout``) are
neutral: not retried, and neither counted against the origin's breaker nor taken as
its success (the origin was never reached; a half-open probe that ends so is freed).
So is any other ``httpx`` error these rules do not name, such as the bare
``httpx.TimeoutException`` the transport raises for a retry it cut before sending it
(the call's deadline passed during the backoff).
Read-phase failures (the request was written, the response did not come) and
500/502/503/504 are retried only when repeating the request is safe: an idempotent
method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or an ``Idempotency-Key`` header, *and* a
body that can be sent again. Every 5xx but 501 (Not Implemented) and 505 (HTTP Version
Not Supported), which say what the server cannot do rather than that it is unwell,
counts against the breaker whether or not it is retried. 429 and 503 pass the
server's ``Retry-After`` to the policy as the delay.

A certificate that fails verification is not retried: another attempt would meet the
same certificate. Both classifiers need the request, which the transport attaches to
every error and response it hands the policy.
"""

from __future__ import annotations

import ssl
from typing import Final

import httpx

from outlast.policy import Decision, Outcome, Phase
from outlast.policy._http import IDEMPOTENT_METHODS, RETRY_STATUSES, judge_status

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "classify_error",
    "classify_result",
    "replayable",
    "retry_safe",
]

_CONNECT_ERRORS: Final = (httpx.ConnectError, httpx.ConnectTimeout)
_READ_ERRORS: Final = (
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.RemoteProtocolError,
)


def replayable(request: httpx.Request) -> bool:
    """Whether the request's body can be sent again (bytes, or a stream already read).

    Added in 0.1.0.
    """
    return isinstance(request.stream, httpx.ByteStream)


def retry_safe(request: httpx.Request) -> bool:
    """Whether a request the server may have seen can be sent again.

    Its method is idempotent or it carries an ``Idempotency-Key``, and its body can be
    replayed.

    Added in 0.1.0.
    """
    idempotent = request.method in IDEMPOTENT_METHODS or "idempotency-key" in request.headers
    return idempotent and replayable(request)


def _request_of(error: httpx.HTTPError) -> httpx.Request | None:
    try:
        return error.request
    except RuntimeError:  # no request attached: treat it as unsafe to repeat
        return None


def _certificate_failed(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def classify_error(outcome: Outcome, /) -> Decision:
    """The policy's classifier for exceptions raised by an outlast transport's attempt.

    Added in 0.1.0.
    """
    error = outcome.error
    if isinstance(error, (httpx.ProxyError, httpx.PoolTimeout)):
        return Decision.NEUTRAL  # the proxy's answer or our own pool: not the target's doing
    if isinstance(error, _CONNECT_ERRORS):
        if _certificate_failed(error):
            return Decision(retry=False, unwell=True)
        return Decision.failure(Phase.CONNECT, idempotent=False)
    if isinstance(error, _READ_ERRORS):
        request = _request_of(error)
        return Decision.failure(Phase.READ, idempotent=request is not None and retry_safe(request))
    return Decision.NEUTRAL  # protocol misuse, a bug: says nothing about the destination


def classify_result(outcome: Outcome, /) -> Decision:
    """The policy's classifier for responses returned by an outlast transport's attempt.

    Added in 0.1.0.
    """
    response = outcome.result
    if not isinstance(response, httpx.Response):
        return Decision.ACCEPT
    return judge_status(
        response.status_code,
        lambda: _safe(response),
        lambda: response.headers.get("retry-after"),
    )


def _safe(response: httpx.Response) -> bool:
    try:
        return retry_safe(response.request)
    except RuntimeError:  # a response built without a request
        return False
