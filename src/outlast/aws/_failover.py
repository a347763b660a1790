"""Region failover for allow-listed reads: fallback clients, then fallback regions.

A wrapped client with fallbacks has its ``_make_api_call`` replaced (on that client
only) by :meth:`Failover.make_api_call`. An operation on the allow-list that fails on
the primary with a connection-class error (the endpoint's breaker is open, the
connection was refused or timed out, the connection dropped before a response) is
sent, with the caller's original parameters, to each fallback in order until one
answers. What never fails over, whatever the allow-list says:

- a strongly consistent read (DynamoDB ``ConsistentRead=True`` on ``GetItem``,
  ``Query``, ``Scan``, on any table of a ``BatchGetItem``; ``TransactGetItems``):
  a replica in another region cannot honour it. ``failover_consistent_reads=True``
  opts in;
- a call whose request body cannot be rewound to where it started (the primary may
  have read it);
- a call made on a fallback's behalf: a fallback never fails over again (east falling
  back to west and west to east cannot recurse).

A fallback's answer wins unless it says "not found" (a 404 status, a ``*NotFound*`` /
``NoSuch*`` code, a DynamoDB ``GetItem`` without ``Item``): another region lacking
the data is no proof that the primary lacks it, so the next fallback is tried and, if
none has it, the primary's connection error is raised. When every fallback fails to
connect too (or a fallback region's client cannot be built), the primary's error is
raised. An answer from a fallback carries ``ResponseMetadata["OutlastFailover"]``
(``Source``, ``Target``, ``Region``) so the caller can see where it came from.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from outlast._events import Emitter
from outlast._exceptions import ConfigError
from outlast.aws._events import FailedOver, FallbackFailed

__all__ = [
    "CONSISTENT_READS",
    "DEFAULT_FAILOVER_OPERATIONS",
    "FAILOVER_ERRORS",
    "NOT_FOUND_CODES",
    "Failover",
    "Fallback",
    "allow_list",
    "consistent_read",
    "read_only",
]

#: Operations that fail over by default, per service: reads that have no side effect
#: and whose data another region holds too (DynamoDB global tables, S3 replication or
#: multi-region access points, Secrets Manager replica secrets, STS). Every other
#: operation of every other service stays on its primary unless listed explicitly.
DEFAULT_FAILOVER_OPERATIONS: Final[Mapping[str, frozenset[str]]] = {
    "dynamodb": frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "DescribeTable"}),
    "s3": frozenset({"GetObject", "HeadObject", "ListObjectsV2"}),
    "secretsmanager": frozenset({"GetSecretValue", "DescribeSecret"}),
    "sts": frozenset({"GetCallerIdentity"}),
}
#: DynamoDB operations that are strongly consistent reads (with ``ConsistentRead``,
#: or always for ``TransactGetItems``): they never fail over unless opted in.
CONSISTENT_READS: Final = frozenset(
    {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"}
)
#: Error codes read as "not found" in a fallback's answer (besides any 404 status).
NOT_FOUND_CODES: Final = frozenset(
    {
        "404",
        "NotFound",
        "NoSuchBucket",
        "NoSuchKey",
        "ParameterNotFound",
        "ResourceNotFoundException",
        "TableNotFoundException",
    }
)
#: Errors that send an allow-listed call to the next fallback: the endpoint was not
#: reached, or dropped the connection before answering.
FAILOVER_ERRORS: Final = (BotoConnectionError, ReadTimeoutError, ConnectionClosedError)

# Set while a call runs on a fallback: that fallback's own Failover passes it through.
_ON_FALLBACK: Final = contextvars.ContextVar("outlast_aws_on_fallback", default=False)


def read_only(service: str, operation: str) -> bool:
    """Whether ``operation`` (API name) of ``service`` fails over by default.

    True exactly for :data:`DEFAULT_FAILOVER_OPERATIONS`; no name pattern makes an
    operation safe (``ssm GetParameter`` is region-local, ``cognito-identity GetId``
    creates an identity).

    Added in 0.1.0.
    """
    return operation in DEFAULT_FAILOVER_OPERATIONS.get(service, ())


def consistent_read(service: str, operation: str, params: Mapping[str, Any]) -> bool:
    """Whether this call asks for a strongly consistent read (DynamoDB only).

    ``ConsistentRead=True`` on ``GetItem``, ``Query``, ``Scan``; on any table of a
    ``BatchGetItem``'s ``RequestItems``; always for ``TransactGetItems``.

    Added in 0.1.0.
    """
    if service != "dynamodb" or operation not in CONSISTENT_READS:
        return False
    if operation == "TransactGetItems":
        return True
    if operation == "BatchGetItem":
        tables = params.get("RequestItems")
        if not isinstance(tables, Mapping):
            return False
        return any(
            isinstance(request, Mapping) and request.get("ConsistentRead") is True
            for request in tables.values()
        )
    return params.get("ConsistentRead") is True


def allow_list(client: Any, operations: Iterable[str] | None) -> Callable[[str], bool]:
    """The test an operation name passes to fail over.

    ``None``: :func:`read_only`. Otherwise exactly the operations given, by API name
    (``GetItem``) or Python name (``get_item``); an unknown name is a ``ConfigError``.
    """
    service: str = client.meta.service_model.service_name
    if operations is None:
        return lambda operation: read_only(service, operation)
    if isinstance(operations, str):
        raise ConfigError("failover_operations", operations, "an iterable of operation names")
    known = frozenset(client.meta.service_model.operation_names)
    by_python_name: dict[str, str] = dict(client.meta.method_to_api_mapping)
    chosen: set[str] = set()
    for name in operations:
        api_name = by_python_name.get(name, name)
        if api_name not in known:
            raise ConfigError(
                "failover_operations", name, f"an operation of {service} (GetItem or get_item)"
            )
        chosen.add(api_name)
    frozen = frozenset(chosen)
    return frozen.__contains__


def _not_found(operation: str, answer: Any) -> bool:
    """Whether a fallback's answer (a parsed response or a ``ClientError``) says "not found"."""
    if isinstance(answer, ClientError):
        response = answer.response
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(response.get("Error", {}).get("Code", ""))
        return status == 404 or code in NOT_FOUND_CODES
    return operation == "GetItem" and isinstance(answer, dict) and "Item" not in answer


class _Bodies:
    """The streams among a call's parameters and where each started, to rewind them."""

    __slots__ = ("_streams",)

    def __init__(self, params: Mapping[str, Any]) -> None:
        streams: list[tuple[Any, int | None]] = []
        for value in params.values():
            if isinstance(value, (bytes, bytearray, str)) or not callable(
                getattr(value, "read", None)
            ):
                continue
            position: int | None
            try:
                seekable = getattr(value, "seekable", None)
                position = None if callable(seekable) and not seekable() else value.tell()
            except Exception:  # no tell(): cannot come back to where it was
                position = None
            streams.append((value, position))
        self._streams = tuple(streams)

    def rewind(self) -> bool:
        """Seek every stream back to its start; False if one cannot be rewound."""
        for stream, position in self._streams:
            if position is None:
                return False
            try:
                stream.seek(position)
            except Exception:
                return False
        return True


def _where(client: Any) -> str:
    return f"{client.meta.region_name} ({client.meta.endpoint_url})"


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class Fallback:
    """One fallback: a client given by the user, or a region whose client is built once.

    Added in 0.1.0.
    """

    __slots__ = ("_build", "_client", "_lock", "label")

    def __init__(
        self,
        *,
        client: Any = None,
        build: Callable[[], Any] | None = None,
        label: str,
    ) -> None:
        self._client = client
        self._build = build
        self._lock = threading.Lock()
        self.label = label

    def client(self) -> Any:
        """The fallback's client (built on first use for a region; a failed build is
        tried again on the next use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    assert self._build is not None
                    self._client = self._build()
        return self._client


class Failover:
    """Stands in for one client's ``_make_api_call``: allow-listed calls may fail over.

    Added in 0.1.0.
    """

    __slots__ = (
        "_allowed",
        "_consistent",
        "_emitter",
        "_fallbacks",
        "_primary",
        "_service",
        "_source",
    )

    def __init__(
        self,
        client: Any,
        fallbacks: Sequence[Fallback],
        allowed: Callable[[str], bool],
        emitter: Emitter,
        *,
        consistent_reads: bool = False,
    ) -> None:
        self._primary = client._make_api_call
        self._fallbacks = tuple(fallbacks)
        self._allowed = allowed
        self._emitter = emitter
        self._consistent = consistent_reads
        self._service: str = client.meta.service_model.service_name
        self._source = _where(client)

    def _may_fail_over(self, operation_name: str, api_params: Mapping[str, Any]) -> bool:
        if _ON_FALLBACK.get() or not self._allowed(operation_name):
            return False
        return self._consistent or not consistent_read(self._service, operation_name, api_params)

    def _failed(self, operation: str, target: str, reason: str) -> None:
        self._emitter.emit(
            FallbackFailed(operation=operation, service=self._service, target=target, reason=reason)
        )

    def _mark(self, answer: Any, client: Any) -> None:
        """Say in the answer's ``ResponseMetadata`` where it came from."""
        parsed = answer.response if isinstance(answer, ClientError) else answer
        metadata = parsed.get("ResponseMetadata") if isinstance(parsed, dict) else None
        if isinstance(metadata, dict):
            metadata["OutlastFailover"] = {
                "Source": self._source,
                "Target": _where(client),
                "Region": client.meta.region_name,
            }

    def _ready(
        self, operation_name: str, bodies: _Bodies, primary_error: Exception
    ) -> Iterator[Any]:
        """The fallback clients to send the call to, in order, each announced as it goes.

        Shared by the sync and async faces, which only differ in how they call one.
        """
        for fallback in self._fallbacks:
            target = fallback.label
            try:
                client = fallback.client()
            except Exception as exc:  # NoRegionError, UnknownEndpoint, credentials, ...
                # A region that cannot be built is a fallback that failed, not the
                # call's error: the primary's error stays the one to raise.
                self._failed(operation_name, target, _reason(exc))
                continue
            target = _where(client)
            if not bodies.rewind():
                # The primary may have read part of the body: sending the rest elsewhere
                # would store a truncated object. Refuse, with the primary's error.
                self._failed(operation_name, target, "the request body cannot be rewound")
                return
            self._emitter.emit(
                FailedOver(
                    operation=operation_name,
                    service=self._service,
                    source=self._source,
                    target=target,
                    reason=_reason(primary_error),
                )
            )
            yield client

    def _settled(self, operation_name: str, client: Any, answer: Any) -> bool:
        """True when ``answer`` (a fallback's result, or what it raised) is the call's.

        False: that fallback failed or said "not found", try the next. A ClientError that
        is the fallback's real answer, or any other error, is raised (marked).
        """
        target = _where(client)
        if isinstance(answer, FAILOVER_ERRORS):
            self._failed(operation_name, target, _reason(answer))
            return False
        if isinstance(answer, ClientError):
            if _not_found(operation_name, answer):
                self._failed(operation_name, target, f"not found there: {_reason(answer)}")
                return False
            self._mark(answer, client)
            raise answer
        if isinstance(answer, BaseException):
            raise answer
        if _not_found(operation_name, answer):
            self._failed(operation_name, target, "not found there: no Item")
            return False
        self._mark(answer, client)
        return True

    def make_api_call(self, operation_name: str, api_params: dict[str, Any]) -> Any:
        if not self._may_fail_over(operation_name, api_params):
            return self._primary(operation_name, api_params)
        original = dict(api_params)  # handlers may rewrite the top level while sending
        bodies = _Bodies(original)
        try:
            return self._primary(operation_name, api_params)
        except FAILOVER_ERRORS as exc:
            primary_error: Exception = exc
        for client in self._ready(operation_name, bodies, primary_error):
            token = _ON_FALLBACK.set(True)
            try:
                answer: Any = client._make_api_call(operation_name, dict(original))
            except Exception as exc:  # judged in _settled: it re-raises what it does not take
                answer = exc
            finally:
                _ON_FALLBACK.reset(token)
            if self._settled(operation_name, client, answer):
                return answer
        raise primary_error
