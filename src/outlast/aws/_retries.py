"""Retries in one layer: botocore's off on a wrapped client, outlast's Policy around each attempt.

botocore retries inside ``Endpoint._send_request``, asking its ``needs-retry`` handler
after every attempt. :func:`disable_botocore_retries` unregisters that handler (its
``retry-config-SERVICE`` id, the same for the standard, adaptive and legacy modes), so
``Endpoint.make_request`` makes exactly one attempt. :class:`Retrier` then calls
``make_request`` through an :class:`outlast.Policy` bound to the endpoint's key
``service:region:scheme://host:port`` (the endpoint's host, never a bucket's): one
breaker, one retry budget and one metric series per endpoint, outlast's attempts and
full jitter. Each attempt goes through botocore's whole request pipeline
again (``request-created`` events, a fresh SigV4 signature, a rewound body), as a
botocore retry does.

What is retryable is botocore's own judgement: :func:`classify_result` and
:func:`classify_error` ask the standard retry mode's checkers (transient status codes
and error codes, throttling codes, errors modelled as retryable, STS
``IDPCommunicationError``, DynamoDB CRC32 mismatches, connection errors). outlast adds
two rules: throttling is retried but does not count against the breaker (the endpoint
is pacing, not failing), and a certificate that fails verification is not retried.
"""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any, Final
from urllib.parse import urlsplit

from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    ProxyConnectionError,
    UnseekableStreamError,
)
from botocore.retries import special
from botocore.retries.standard import (
    ModeledRetryableChecker,
    OrRetryChecker,
    RetryContext,
    RetryEventAdapter,
    ThrottledRetryableChecker,
    ThrottlingErrorDetector,
    TransientRetryableChecker,
)
from urllib3.util.ssl_match_hostname import CertificateError

from outlast import _root
from outlast._exceptions import CircuitOpenError as _PolicyCircuitOpen
from outlast.aws._errors import CircuitOpenError
from outlast.policy import Decision, Outcome, Phase, Policy, retry_all

__all__ = [
    "POLICY_NAME",
    "Reply",
    "Retrier",
    "classify_error",
    "classify_result",
    "default_policy",
    "disable_botocore_retries",
    "endpoint_key",
    "outlast_environ",
    "with_aws_classifiers",
]

POLICY_NAME: Final = "outlast.aws"
_RETRY_AFTER_HEADER: Final = "x-amz-retry-after"  # milliseconds
_CONNECT_PHASE: Final = (EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError)
_UNREWINDABLE: Final = (bytes, bytearray, str)
# A certificate that does not verify, or names another host: another attempt meets it again.
_CERTIFICATE_ERRORS: Final = (ssl.SSLCertVerificationError, ssl.CertificateError, CertificateError)

# The standard retry mode's conditions, without its attempt counter (the policy counts).
_TRANSIENT: Final = TransientRetryableChecker()
_CONDITIONS: Final = OrRetryChecker(
    [
        _TRANSIENT,
        ThrottledRetryableChecker(),
        ModeledRetryableChecker(),
        OrRetryChecker([special.RetryIDPCommunicationError(), special.RetryDDBChecksumError()]),
    ]
)
_DDB_CHECKSUM: Final = special.RetryDDBChecksumError()
_THROTTLING: Final = ThrottlingErrorDetector(RetryEventAdapter())


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """What one attempt of ``Endpoint.make_request`` returned, with its operation.

    Added in 0.1.0.
    """

    http_response: Any
    parsed: Any
    operation_model: Any
    #: What the classifier reads instead of ``http_response`` (an aiobotocore response,
    #: whose ``content`` is awaited, read into a plain one); None: ``http_response``.
    judged: Any = None


def _retry_after(http_response: Any) -> float | None:
    value = http_response.headers.get(_RETRY_AFTER_HEADER)
    if value is None:
        return None
    try:
        milliseconds = int(value)
    except (TypeError, ValueError):
        return None
    return milliseconds / 1000.0 if milliseconds >= 0 else None


def classify_result(outcome: Outcome, /) -> Decision:
    """The policy's classifier for what ``Endpoint.make_request`` returned (a :class:`Reply`).

    Successes are accepted without looking further (except DynamoDB's CRC32, which
    botocore checks on every response too); error responses are judged by botocore's
    standard retry checkers.

    Added in 0.1.0.
    """
    reply = outcome.result
    if not isinstance(reply, Reply):
        return Decision.ACCEPT
    http_response = reply.http_response if reply.judged is None else reply.judged
    service = reply.operation_model.service_model.service_name
    if http_response.status_code < 300:
        if service != "dynamodb":
            return Decision.ACCEPT
        context = RetryContext(
            outcome.attempt, operation_model=reply.operation_model, http_response=http_response
        )
        if _DDB_CHECKSUM.is_retryable(context):
            return Decision.failure(Phase.READ, idempotent=True)
        return Decision.ACCEPT
    parsed = reply.parsed if isinstance(reply.parsed, dict) else None
    context = RetryContext(
        outcome.attempt,
        operation_model=reply.operation_model,
        parsed_response=parsed,
        http_response=http_response,
    )
    if not _CONDITIONS.is_retryable(context):
        return Decision.ACCEPT  # a business error (or one botocore would not retry)
    delay = _retry_after(http_response)
    if _THROTTLING.is_throttling_error_from_context(context):
        return Decision(retry=True, unwell=False, delay=delay)  # pacing us, not failing
    return Decision(retry=True, unwell=True, delay=delay)


def _certificate_failed(error: BaseException) -> bool:
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _CERTIFICATE_ERRORS):
            return True
        kwargs = getattr(current, "kwargs", None)
        nested = kwargs.get("error") if isinstance(kwargs, dict) else None
        for link in (current.__cause__, current.__context__, nested, *current.args):
            if isinstance(link, BaseException):
                pending.append(link)
    return False


def classify_error(outcome: Outcome, /) -> Decision:
    """The policy's classifier for errors raised by ``Endpoint.make_request``.

    botocore's transient errors (``botocore.exceptions.ConnectionError`` and
    ``HTTPClientError``, timeouts included) are retried for every operation, as botocore
    retries them; a certificate that fails verification is not. Anything else (a bad
    parameter, missing credentials, a bug) is the caller's and is raised at once.

    Added in 0.1.0.
    """
    error = outcome.error
    if error is None:
        return Decision.ACCEPT
    if not _TRANSIENT.is_retryable(RetryContext(outcome.attempt, caught_exception=error)):
        return Decision.ACCEPT
    if _certificate_failed(error):
        return Decision(retry=False, unwell=True)
    phase = Phase.CONNECT if isinstance(error, _CONNECT_PHASE) else Phase.READ
    return Decision.failure(phase, idempotent=True)


def outlast_environ() -> dict[str, str]:
    """A snapshot of the ``OUTLAST_*`` variables set now: what default parts are built from."""
    return _root.outlast_environ()


def default_policy(max_attempts: int | None = None) -> Policy:
    """The policy wrapped clients share when given none: ``OUTLAST_*`` and botocore's judgement.

    ``max_attempts`` (a botocore ``total_max_attempts`` the user set explicitly) caps
    ``OUTLAST_RETRY_ATTEMPTS``. One policy per cap and per ``OUTLAST_*`` configuration,
    shared by every wrapped client in the process (:mod:`outlast._root`), so that one
    endpoint has one breaker however many clients reach it; with ``OUTLAST_REDIS_URL``
    set its breakers are the fleet's. When an ``OUTLAST_*`` variable changes, the next
    call builds a new policy from the new values.

    Added in 0.1.0.
    """
    return _root.shared_policy(
        POLICY_NAME,
        classify_error=classify_error,
        classify_result=classify_result,
        max_attempts=max_attempts,
    )


def with_aws_classifiers(policy: Policy) -> Policy:
    """``policy`` judging with botocore's rules where it was left to ``Policy``'s defaults.

    A classifier still at ``Policy``'s default (``classify_error=outlast.policy.retry_all``,
    ``classify_result=None``) is replaced by :func:`classify_error` /
    :func:`classify_result`; one the user set is kept. The result is
    ``policy.derive(...)``: it shares the user's breakers and budgets.
    """
    error = classify_error if policy.classify_error is retry_all else None
    result = classify_result if policy.classify_result is None else None
    if error is None and result is None:
        return policy
    return policy.derive(classify_error=error, classify_result=result)


def explicit_max_attempts(client: Any) -> int | None:
    """The total attempts the user asked botocore for (config or ``AWS_MAX_ATTEMPTS``), if any."""
    retries = getattr(client.meta.config, "retries", None) or {}
    value = retries.get("total_max_attempts")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def disable_botocore_retries(client: Any) -> None:
    """Unregister botocore's retry handler from ``client``: one attempt per ``make_request``."""
    name = client.meta.service_model.service_id.hyphenize()
    client.meta.events.unregister(f"needs-retry.{name}", unique_id=f"retry-config-{name}")


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _endpoint_host(service: str, host: str, base: str | None) -> str:
    """``host`` without a bucket (or access point) label: the endpoint it belongs to."""
    if base and host != base and host.endswith("." + base):
        return base  # bucket.s3.us-east-1.amazonaws.com under the client's endpoint
    if service == "s3":
        labels = host.split(".")
        for index in range(1, len(labels)):
            if labels[index].startswith("s3"):  # s3, s3-accesspoint, s3express-...
                return ".".join(labels[index:])
    return host


def endpoint_key(service: str, region: str | None, url: str, base_url: str | None = None) -> str:
    """The key of an endpoint's breaker, budget and metric series.

    ``service:region:scheme://host:port``, where ``host`` is the endpoint's, not a
    bucket's: a virtual-host S3 URL (``https://BUCKET.s3.us-east-1.amazonaws.com``)
    keys as its endpoint (``s3.us-east-1.amazonaws.com``, or the client's own
    ``base_url`` host it is under), so that keys stay as few as the endpoints a
    process calls, however many buckets it names.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    base = urlsplit(base_url).hostname if base_url else None
    host = _endpoint_host(service, host, base.lower() if base else None)
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)
    return f"{service}:{region or '-'}:{parts.scheme}://{host}:{port}"


class _Attempts:
    """One call's attempts: rewinds the body before a retry, tags what comes back."""

    __slots__ = ("body", "number", "operation_model", "request_dict", "send", "start")

    def __init__(self, send: Any, operation_model: Any, request_dict: Any) -> None:
        self.send = send
        self.operation_model = operation_model
        self.request_dict = request_dict
        self.number = 0
        body = request_dict.get("body")
        self.body = None if body is None or isinstance(body, _UNREWINDABLE) else body
        self.start = 0
        if self.body is not None:
            try:
                self.start = self.body.tell()
            except Exception:  # no position: botocore rewinds to 0 as well
                self.start = 0

    def _rewind(self) -> None:
        body = self.body
        if body is None:
            return
        try:
            body.seek(self.start)
        except Exception as exc:
            raise UnseekableStreamError(stream_object=body) from exc

    def __call__(self) -> Reply:
        self.number += 1
        if self.number > 1:
            self._rewind()
        http_response, parsed = self.send(self.operation_model, self.request_dict)
        if isinstance(parsed, dict):
            metadata = parsed.get("ResponseMetadata")
            if isinstance(metadata, dict):
                metadata["RetryAttempts"] = self.number - 1
        return Reply(http_response, parsed, self.operation_model)


class Retrier:
    """Stands in for one client's ``Endpoint.make_request``: every call through the policy.

    Added in 0.1.0.
    """

    __slots__ = ("_base", "_policy", "_region", "_send", "_service")

    def __init__(self, client: Any, policy: Policy) -> None:
        self._send = client._endpoint.make_request
        self._policy = policy
        self._service: str = client.meta.service_model.service_name
        self._region: str | None = client.meta.region_name
        self._base: str | None = getattr(client._endpoint, "host", None)

    def make_request(self, operation_model: Any, request_dict: Any) -> Any:
        url: str = request_dict["url"]
        key = endpoint_key(self._service, self._region, url, self._base)
        policy = self._policy.for_key(key)
        try:
            reply = policy.call(_Attempts(self._send, operation_model, request_dict))
        except _PolicyCircuitOpen as exc:
            raise CircuitOpenError(
                endpoint_url=url, name=exc.name, retry_after=exc.retry_after
            ) from exc
        return reply.http_response, reply.parsed
