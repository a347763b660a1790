"""What a requests attempt's outcome means to the policy: retry it or not, count it or not.

The rules are ``outlast.http``'s, in requests' exception types. Connect-phase failures
(the name did not resolve, every address refused or timed out, the TLS handshake broke
off: urllib3's ``NewConnectionError``, ``NameResolutionError``, ``ConnectTimeoutError``
under a ``requests.ConnectionError``, and ``requests.ConnectTimeout``) never reached the
server, so they are retried for every method. Read-phase failures (the connection
dropped after the request was written, ``requests.ReadTimeout``) and 500/502/503/504 are
retried only when repeating the request is safe: an idempotent method (GET, HEAD,
OPTIONS, TRACE, PUT, DELETE) or an ``Idempotency-Key`` header, *and* a body that can be sent
again (none, ``bytes`` or ``str``). 429 and 503 pass ``Retry-After`` as the delay; 429
is not held against the origin's breaker; every other 5xx but 501 and 505 is (whether
or not it is retried). A certificate that fails verification is not
retried, and a proxy that refuses (``requests.exceptions.ProxyError``) is neither
retried nor held against the origin. Neither is a retry the adapter cut before sending it
because the call's deadline passed during its backoff (a ``requests.Timeout`` marked
``outlast_unsent``).
"""

from __future__ import annotations

import ssl
from typing import Any, Final

import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
)
from urllib3.util.ssl_match_hostname import CertificateError

from outlast.policy import Decision, Outcome, Phase
from outlast.policy._http import IDEMPOTENT_METHODS, RETRY_STATUSES, judge_status

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "classify_error",
    "classify_result",
    "never_sent",
    "retry_safe",
]

_CONNECT_REASONS: Final = (NewConnectionError, ConnectTimeoutError)
_CERTIFICATE_ERRORS: Final = (ssl.SSLCertVerificationError, ssl.CertificateError, CertificateError)


def retry_safe(request: Any) -> bool:
    """Whether a ``PreparedRequest`` the server may have seen can be sent again.

    Its method is idempotent or it carries an ``Idempotency-Key``, and its body is
    none, ``bytes`` or ``str`` (a file or generator has been consumed).

    Added in 0.1.0.
    """
    if request is None:
        return False
    method = (request.method or "").upper()
    headers = request.headers or {}
    idempotent = method in IDEMPOTENT_METHODS or "Idempotency-Key" in headers
    return idempotent and (request.body is None or isinstance(request.body, (bytes, str)))


def _chain(error: BaseException) -> list[BaseException]:
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    out: list[BaseException] = []
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        out.append(current)
        reason = getattr(current, "reason", None) if isinstance(current, MaxRetryError) else None
        # Not __context__: a retry runs while the previous attempt's error is being
        # handled, and would make a read failure look like the connect failure before it.
        for link in (current.__cause__, reason, *current.args):
            if isinstance(link, BaseException):
                pending.append(link)
    return out


def never_sent(error: BaseException | None) -> bool:
    """Whether ``error`` failed the connect phase: the request never left (safe to retry)."""
    if isinstance(error, (requests.ConnectTimeout, requests.exceptions.SSLError)):
        return True
    if not isinstance(error, requests.ConnectionError):
        return False
    return any(isinstance(link, _CONNECT_REASONS) for link in _chain(error))


def classify_error(outcome: Outcome, /) -> Decision:
    """The policy's classifier for exceptions raised by an outlast adapter's attempt.

    Added in 0.1.0.
    """
    error = outcome.error
    if isinstance(error, requests.exceptions.ProxyError):
        return Decision.NEUTRAL  # the proxy's answer: not the target's health, either way
    if getattr(error, "outlast_unsent", False):
        return Decision.NEUTRAL  # a retry cut before it was sent: the deadline had passed
    if not isinstance(error, (requests.ConnectionError, requests.Timeout)):
        return Decision.NEUTRAL  # a bad URL, a missing schema, a bug: the caller's
    chain = _chain(error)
    if any(isinstance(link, _CERTIFICATE_ERRORS) for link in chain):
        return Decision(retry=False, unwell=True)
    if never_sent(error):
        return Decision.failure(Phase.CONNECT, idempotent=False)
    return Decision.failure(Phase.READ, idempotent=retry_safe(getattr(error, "request", None)))


def classify_result(outcome: Outcome, /) -> Decision:
    """The policy's classifier for ``requests.Response`` values an adapter's attempt returned.

    Added in 0.1.0.
    """
    response = outcome.result
    if not isinstance(response, requests.Response):
        return Decision.ACCEPT
    return judge_status(
        response.status_code,
        lambda: retry_safe(response.request),
        lambda: response.headers.get("Retry-After"),
    )
