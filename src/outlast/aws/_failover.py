"""Region failover for allow-listed operations: fallback clients, then fallback regions.

A wrapped client with fallbacks has its ``_make_api_call`` replaced (on that client
only) by :meth:`Failover.make_api_call`. An operation on the allow-list that fails on
the primary with a connection-class error (the endpoint's breaker is open, the
connection was refused or timed out, the connection dropped before a response) is
sent, with the caller's original parameters, to each fallback in order until one
answers. Any answer counts, an error response included (it is the fallback's verdict).
When every fallback fails to connect too (or a fallback region's client cannot be
built), the primary's error is raised. Operations
not on the allow-list (writes, unless the user lists them) never fail over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from botocore.exceptions import (
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
    "DEFAULT_FAILOVER_OPERATIONS",
    "FAILOVER_ERRORS",
    "READ_PREFIXES",
    "Failover",
    "Fallback",
    "allow_list",
    "read_only",
]

#: Operations that fail over by default, per service, beside :data:`READ_PREFIXES`.
DEFAULT_FAILOVER_OPERATIONS: Final = {
    "dynamodb": frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "DescribeTable"}),
    "s3": frozenset({"GetObject", "HeadObject", "ListObjectsV2"}),
}
#: Operation name prefixes read as read-only in every service.
READ_PREFIXES: Final = ("Describe", "Get", "List")
#: Errors that send an allow-listed call to the next fallback: the endpoint was not
#: reached, or dropped the connection before answering.
FAILOVER_ERRORS: Final = (BotoConnectionError, ReadTimeoutError, ConnectionClosedError)


def read_only(service: str, operation: str) -> bool:
    """Whether ``operation`` of ``service`` fails over by default.

    Added in 0.1.0.
    """
    return operation in DEFAULT_FAILOVER_OPERATIONS.get(service, ()) or operation.startswith(
        READ_PREFIXES
    )


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

    __slots__ = ("_allowed", "_emitter", "_fallbacks", "_primary", "_service", "_source")

    def __init__(
        self,
        client: Any,
        fallbacks: Sequence[Fallback],
        allowed: Callable[[str], bool],
        emitter: Emitter,
    ) -> None:
        self._primary = client._make_api_call
        self._fallbacks = tuple(fallbacks)
        self._allowed = allowed
        self._emitter = emitter
        self._service: str = client.meta.service_model.service_name
        self._source = _where(client)

    def make_api_call(self, operation_name: str, api_params: dict[str, Any]) -> Any:
        if not self._allowed(operation_name):
            return self._primary(operation_name, api_params)
        original = dict(api_params)  # handlers may rewrite the top level while sending
        try:
            return self._primary(operation_name, api_params)
        except FAILOVER_ERRORS as exc:
            primary_error: Exception = exc
        for fallback in self._fallbacks:
            target = fallback.label
            try:
                client = fallback.client()
            except Exception as exc:  # NoRegionError, UnknownEndpoint, credentials, ...
                # A region that cannot be built is a fallback that failed, not the
                # call's error: the primary's error stays the one to raise.
                self._emitter.emit(
                    FallbackFailed(
                        operation=operation_name,
                        service=self._service,
                        target=target,
                        reason=_reason(exc),
                    )
                )
                continue
            target = _where(client)
            try:
                self._emitter.emit(
                    FailedOver(
                        operation=operation_name,
                        service=self._service,
                        source=self._source,
                        target=target,
                        reason=_reason(primary_error),
                    )
                )
                return client._make_api_call(operation_name, dict(original))
            except FAILOVER_ERRORS as exc:
                self._emitter.emit(
                    FallbackFailed(
                        operation=operation_name,
                        service=self._service,
                        target=target,
                        reason=_reason(exc),
                    )
                )
        raise primary_error
