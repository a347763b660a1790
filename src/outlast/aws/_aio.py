"""aiobotocore clients: the same resolver, policy and failover, natively async.

Needs the extra ``outlast[aiobotocore]``. :func:`outlast.aws.wrap` sends an
aiobotocore client (``AioBaseClient``, as made by ``AioSession.create_client`` or
aioboto3) here. Its HTTP session is aiobotocore's ``AIOHTTPSession``, whose aiohttp
connector is built on the first request from the session's connector arguments:

- DNS: those arguments get an :class:`AioResolver` (aiohttp's ``AbstractResolver``,
  asking :meth:`outlast.Resolver.aresolve`, addresses healthy-first) and
  ``use_dns_cache=False``, so aiohttp's own 10 s name cache never sits in front of
  the resolver's last-known-good answers;
- retries: aiobotocore registers its retry handler under botocore's event names, so
  :func:`~outlast.aws._retries.disable_botocore_retries` removes it, and
  :class:`AsyncRetrier` awaits each ``make_request`` through
  :meth:`outlast.Policy.acall` (one layer: attempts, budget and breaker per endpoint);
- failover: :class:`AsyncFailover`, the rules of :class:`~outlast.aws._failover.Failover`
  awaited (``fallback_clients`` only: a region's aiobotocore client has to be entered
  and closed by its owner);
- chaos: ``OUTLAST_CHAOS`` connect and HTTP faults around the session's ``send``
  (:mod:`outlast.chaos._aiobotocore`, plugged in by ``wrap``).

Imported only for an aiobotocore client; nothing here imports aiobotocore at load.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult

from outlast._dial import Outliers, plan
from outlast._exceptions import CircuitOpenError as _PolicyCircuitOpen
from outlast._exceptions import ConfigError, ResolveError
from outlast.aws._errors import CircuitOpenError
from outlast.aws._failover import (
    _ON_FALLBACK,
    FAILOVER_ERRORS,
    Failover,
    _Bodies,
)
from outlast.aws._retries import Reply, _Attempts, endpoint_key
from outlast.dns import Resolver
from outlast.policy import Policy

__all__ = ["AioResolver", "AsyncFailover", "AsyncRetrier", "install_aio"]


class AioResolver(AbstractResolver):
    """aiohttp's resolver seam answered by :class:`outlast.Resolver` (no aiohttp cache).

    Added in 0.1.0.
    """

    def __init__(self, resolver: Resolver, outliers: Outliers) -> None:
        self._resolver = resolver
        self._outliers = outliers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            answer = await self._resolver.aresolve(host)
        except ResolveError as exc:
            raise OSError(socket.EAI_NONAME, f"{host}: {exc}") from exc
        found: list[ResolveResult] = []
        for address in plan(answer.addresses, port, self._outliers):
            kind = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family not in (socket.AF_UNSPEC, kind):
                continue
            found.append(
                {
                    "hostname": host,
                    "host": address,
                    "port": port,
                    "family": kind,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        if not found:
            raise OSError(socket.EAI_NODATA, f"{host}: no address of family {family!r}")
        return found

    async def close(self) -> None:
        return None  # the resolver is shared; its owner closes it


def install_aio(client: Any, resolver: Resolver, outliers: Outliers) -> None:
    """Make ``client``'s aiohttp connector resolve through ``resolver``, uncached."""
    session = client._endpoint.http_session
    arguments = getattr(session, "_connector_args", None)
    if not isinstance(arguments, dict) or not hasattr(session, "_get_session"):
        raise ConfigError(
            "client._endpoint.http_session",
            session,
            "aiobotocore's AIOHTTPSession (outlast.aws cannot resolve for other HTTP sessions)",
        )
    if getattr(session, "_sessions", None):
        raise ConfigError(
            "client", client, "an aiobotocore client wrapped before its first request"
        )
    arguments["resolver"] = AioResolver(resolver, outliers)
    arguments["use_dns_cache"] = False


@dataclasses.dataclass(frozen=True, slots=True)
class _Judged:
    """The parts of a response botocore's retry checkers read, content already awaited."""

    status_code: int
    headers: Any
    content: bytes


class _AsyncAttempts(_Attempts):
    """:class:`_Attempts` for an awaited ``make_request``."""

    __slots__ = ()

    async def __call__(self) -> Reply:  # type: ignore[override]
        self.number += 1
        if self.number > 1:
            self._rewind()
        http_response, parsed = await self.send(self.operation_model, self.request_dict)
        if isinstance(parsed, dict):
            metadata = parsed.get("ResponseMetadata")
            if isinstance(metadata, dict):
                metadata["RetryAttempts"] = self.number - 1
        judged = None
        if self.operation_model.service_model.service_name == "dynamodb":
            # botocore's CRC32 check reads ``content``; aiobotocore's must be awaited
            # (it was read already: DynamoDB answers are never streamed).
            judged = _Judged(
                http_response.status_code, http_response.headers, await http_response.content
            )
        return Reply(http_response, parsed, self.operation_model, judged)


class AsyncRetrier:
    """Stands in for an aiobotocore client's ``Endpoint.make_request``: awaited through the policy.

    Added in 0.1.0.
    """

    __slots__ = ("_base", "_policy", "_region", "_send", "_service")

    def __init__(self, client: Any, policy: Policy) -> None:
        self._send = client._endpoint.make_request
        self._policy = policy
        self._service: str = client.meta.service_model.service_name
        self._region: str | None = client.meta.region_name
        self._base: str | None = getattr(client._endpoint, "host", None)

    async def make_request(self, operation_model: Any, request_dict: Any) -> Any:
        url: str = request_dict["url"]
        key = endpoint_key(self._service, self._region, url, self._base)
        policy = self._policy.for_key(key)
        try:
            reply = await policy.acall(_AsyncAttempts(self._send, operation_model, request_dict))
        except _PolicyCircuitOpen as exc:
            raise CircuitOpenError(
                endpoint_url=url, name=exc.name, retry_after=exc.retry_after
            ) from exc
        return reply.http_response, reply.parsed


class AsyncFailover(Failover):
    """:class:`Failover` for an aiobotocore client's awaited ``_make_api_call``.

    Added in 0.1.0.
    """

    __slots__ = ()

    async def make_api_call(self, operation_name: str, api_params: dict[str, Any]) -> Any:
        if not self._may_fail_over(operation_name, api_params):
            return await self._primary(operation_name, api_params)
        original = dict(api_params)
        bodies = _Bodies(original)
        try:
            return await self._primary(operation_name, api_params)
        except FAILOVER_ERRORS as exc:
            primary_error: Exception = exc
        for client in self._ready(operation_name, bodies, primary_error):
            token = _ON_FALLBACK.set(True)
            try:
                answer: Any = await client._make_api_call(operation_name, dict(original))
            except Exception as exc:  # judged in _settled: it re-raises what it does not take
                answer = exc
            finally:
                _ON_FALLBACK.reset(token)
            if self._settled(operation_name, client, answer):
                return answer
        raise primary_error
