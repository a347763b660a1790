"""``outlast.Transport`` and ``outlast.AsyncTransport``: httpx transports with outlast inside.

Each is the httpx transport it replaces (a subclass, built from the same arguments),
with two changes: its pool dials through an outlast network backend (resolution by
:class:`outlast.Resolver`, address failover, ejection, Happy Eyeballs), and each request
goes through an :class:`outlast.Policy` bound to the request's origin. The policy's
classifiers (:mod:`outlast.http._classify`) decide what is retried; requests go through
a view of the policy (:mod:`outlast.http._rules`) sharing its breakers and budgets. The
transport attaches the request to every error and response it hands them, and closes a
failed response as soon as it is retried (before the backoff) or the request is
cancelled or interrupted.

With ``OUTLAST_DISABLE=1`` in the environment the transport is plain httpx: httpcore's
own backend, no policy. With ``OUTLAST_CHAOS`` set, :mod:`outlast.chaos._http` injects
connect faults under the dialler and HTTP faults into each attempt (inside the policy).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import anyio
import httpcore
import httpx

from outlast import _root
from outlast._config import VARIABLES, Settings
from outlast._dial import DEFAULT_EJECT_FOR, Outliers
from outlast._events import Emitter, Listener
from outlast._exceptions import CircuitOpenError as _PolicyCircuitOpen
from outlast._exceptions import ConfigError
from outlast.dns import Resolver
from outlast.http._backend import AsyncBackend, SyncBackend
from outlast.http._classify import classify_error, classify_result
from outlast.http._errors import CircuitOpenError
from outlast.http._events import LOGGER, RequestFinished
from outlast.http._pool import (
    ASYNC_POOLS,
    DEFAULT_LIMITS,
    SYNC_POOLS,
    Pools,
    ProxyArg,
    build_pool,
    proxy_of,
)
from outlast.http._rules import HELD, http_view, retry_after
from outlast.policy import Policy

if TYPE_CHECKING:
    from outlast.chaos._http import Injector

__all__ = ["AsyncTransport", "Transport", "origin_of"]

PoolT = TypeVar("PoolT")
BackendT = TypeVar("BackendT")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
POLICY_NAME: Final = "outlast.http"
_DISABLE: Final = next(v for v in VARIABLES if v.name == "OUTLAST_DISABLE")


def disabled() -> bool:
    """Whether ``OUTLAST_DISABLE`` is set, read alone: no other variable can stop the switch."""
    return bool(_DISABLE.parse(_DISABLE.name, os.environ.get(_DISABLE.name, "0")))


def origin_of(url: httpx.URL) -> str:
    """The key of a URL's breaker and budget: ``scheme://host:port``."""
    port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
    return f"{url.scheme}://{url.host}:{port}"


def http_policy(listeners: Iterable[Listener] = ()) -> Policy:
    """The policy an outlast transport uses when given none: ``OUTLAST_*`` and HTTP classifiers.

    One per process and ``OUTLAST_*`` configuration (and listeners), shared by every
    transport given none, so one origin has one breaker and one budget in the process.
    """
    return _root.shared_policy(
        POLICY_NAME,
        classify_error=classify_error,
        classify_result=classify_result,
        listeners=listeners,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Parts:
    """What a transport is made of, decided once from its arguments and the environment."""

    resolver: Resolver | None
    policy: Policy | None
    outliers: Outliers | None
    emitter: Emitter
    view: Policy | None  # what requests go through: the policy, freeing responses it retries
    chaos: Injector | None = None  # OUTLAST_CHAOS: connect and HTTP faults to inject
    listened: bool = False  # listeners were given: every request's latency is reported
    #: ``Retry.deadline`` of the policy (``OUTLAST_RETRY_DEADLINE``), or None.
    deadline: float | None = None


def _parts(
    resolver: Resolver | None,
    policy: Policy | None,
    eject_for: float,
    listeners: Iterable[Listener],
) -> _Parts:
    if resolver is not None and not isinstance(resolver, Resolver):
        raise ConfigError("resolver", resolver, "an outlast.Resolver or None")
    if policy is not None and not isinstance(policy, Policy):
        raise ConfigError("policy", policy, "an outlast.Policy or None")
    listeners = tuple(listeners)
    emitter = Emitter(LOGGER, listeners)
    if disabled():
        return _Parts(None, None, None, emitter, None, listened=bool(listeners))
    chaos = _root.http_chaos(Settings.from_env(), listeners)  # OUTLAST_CHAOS: a rehearsal
    outliers = Outliers(eject_for=eject_for)
    if policy is None:
        policy = http_policy(listeners)
    view = http_view(policy)
    if resolver is None:  # the process's, shared: this transport never closes it
        resolver = _root.shared_resolver(listeners=listeners)
    retry = view.retry
    deadline = None if retry is None else retry.deadline
    return _Parts(resolver, policy, outliers, emitter, view, chaos, bool(listeners), deadline)


def _circuit_open(exc: _PolicyCircuitOpen, request: httpx.Request) -> CircuitOpenError:
    return CircuitOpenError(exc.name, exc.retry_after, request=request)


#: The shortest timeout an attempt is given when its deadline has (nearly) passed: httpcore
#: reads 0 as "do not block", which is not "give up now".
_LEAST_TIMEOUT: Final = 0.001


def _limit(timeout: object, deadline: float | None) -> float | None:
    """The seconds a whole call may take: connect + read of httpx's ``timeout``, or less.

    ``deadline`` (``Retry.deadline``, ``OUTLAST_RETRY_DEADLINE``) applies too, the
    tighter winning. None when neither bounds the call.
    """
    limit: float | None = None
    if isinstance(timeout, dict):
        connect, read = timeout.get("connect"), timeout.get("read")
        if connect is not None and read is not None:
            limit = float(connect) + float(read)
    if deadline is not None:
        limit = deadline if limit is None else min(limit, deadline)
    return limit if limit is not None and limit > 0 else None


def _cut_first(timeout: object, limit: float) -> bool:
    """Whether a first attempt's timeouts need cutting to ``limit``: one phase is unbounded
    or longer (the usual ``httpx.Timeout(5.0)`` within connect + read needs none)."""
    if not isinstance(timeout, dict):
        return False
    for value in timeout.values():
        if value is None or value > limit:
            return True
    return False


#: A route's cache key: the raw parts of a URL that its origin is made of. httpx's
#: ``URL.host`` / ``URL.port`` properties decode on every read; the parsed reference
#: they read from does not (``_uri_reference``, httpx 0.28 and 1.0's URL).
_RouteKey = tuple[str, str, "int | None"]
#: Most origins a transport remembers the policy view of (then it starts afresh).
_MAX_ROUTES: Final = 256


class _Route:
    """An origin's policy handle, kept by a transport: its key, the view bound to that
    key's guard, and that view with the last deadline asked for.

    Immutable, so threads read it whole; the transport replaces it when the policy's
    registry hands back another view (the key was evicted and made afresh) or a request
    brings another deadline.
    """

    __slots__ = ("key", "limit", "limited", "view")

    def __init__(self, key: str, view: Policy, limit: float | None, limited: Policy) -> None:
        self.key = key
        self.view = view
        self.limit = limit
        self.limited = limited


def _restore_causes(error: BaseException) -> None:
    """Put back the causes httpcore's pool hid: it re-raises with ``raise exc from None``.

    So a ``ResolveError`` (or the dial's own error) behind ``httpcore.ConnectError`` is
    its ``__cause__`` again, as the backend raised it, and a printed traceback shows why.
    """
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if (
            link.__cause__ is None
            and link.__suppress_context__
            and link.__context__ is not None
            and type(link).__module__.startswith("httpcore")
        ):
            link.__cause__ = link.__context__
        link = link.__cause__


class _Attempts:
    """One request's attempts: sends it, tags what comes back, frees a failed response.

    With a deadline, each retry's httpx timeouts are cut to the time that remains, so
    the attempts and the waits between them together stay within it (the transport cuts
    the first attempt's before the call, and only when one phase could outlast it).
    """

    __slots__ = ("deadline", "freed", "last", "request", "send_once", "sent", "timeouts")

    def __init__(
        self,
        send_once: Callable[[httpx.Request], Any],
        request: httpx.Request,
        deadline: float | None = None,
    ) -> None:
        self.send_once = send_once
        self.request = request
        self.last: httpx.Response | None = None
        #: The last response closed for a retry: the policy may still hand it back.
        self.freed: httpx.Response | None = None
        #: When the whole call must be over (``time.monotonic()``), or None.
        self.deadline = deadline
        self.timeouts: dict[str, float | None] | None = None  # the caller's own, if cut
        self.sent = False  # an attempt was made: the next one is a retry

    def _bound(self) -> None:
        """Cut the request's timeouts to what remains before the deadline."""
        deadline = self.deadline
        if deadline is None:
            return
        request = self.request
        if self.timeouts is None:
            self.timeouts = dict(request.extensions.get("timeout") or {})
        remaining = max(_LEAST_TIMEOUT, deadline - time.monotonic())
        cut = {
            phase: remaining if value is None else min(value, remaining)
            for phase, value in self.timeouts.items()
        }
        request.extensions = {**request.extensions, "timeout": cut}

    def restore(self) -> None:
        """Give the request back its own timeouts."""
        if self.timeouts is not None:
            self.request.extensions = {**self.request.extensions, "timeout": self.timeouts}
            self.timeouts = None

    def release(self) -> None:
        """Close the last response: it is being retried, or the request was abandoned."""
        last = self.last
        if last is not None:
            last.close()
            self.freed, self.last = last, None

    async def arelease(self) -> None:
        last = self.last
        if last is not None:
            with anyio.CancelScope(shield=True):  # a cancelled wait must still free it
                await last.aclose()
            self.freed, self.last = last, None

    def send(self) -> httpx.Response:
        if self.sent:  # a retry: the policy chose it (in testing mode it does not sleep)
            self.release()
            self._bound()
        else:
            self.sent = True
        request = self.request
        try:
            response: httpx.Response = self.send_once(request)
        except httpx.RequestError as exc:
            exc.request = request
            _restore_causes(exc)
            raise
        response.request = request
        self.last = response
        return response

    async def asend(self) -> httpx.Response:
        if self.sent:
            await self.arelease()
            self._bound()
        else:
            self.sent = True
        request = self.request
        send: Callable[[httpx.Request], Awaitable[httpx.Response]] = self.send_once
        try:
            response = await send(request)
        except httpx.RequestError as exc:
            exc.request = request
            _restore_causes(exc)
            raise
        response.request = request
        self.last = response
        return response


def _refused(attempts: _Attempts, policy: Policy) -> CircuitOpenError:
    """The error for a response closed for a retry that the breaker then refused."""
    return CircuitOpenError(policy.key, retry_after(policy), request=attempts.request)


class _Face(Generic[PoolT, BackendT]):
    """What :class:`Transport` and :class:`AsyncTransport` share, written once.

    The arguments (httpx's transport's, plus outlast's), the parts they decide, the pool
    built from them and the public properties. A face names its httpcore pool classes
    (``_pools``) and makes its network backend (``_backend``); the rest is here.
    """

    _pools: Pools[PoolT, BackendT]
    _pool: PoolT
    _parts: _Parts
    _routes: dict[_RouteKey, _Route]
    _keyed: Callable[[str], Policy]
    _send: Any

    def __init__(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        proxy: ProxyArg | None = None,
        uds: str | None = None,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[Any] | None = None,
        *,
        resolver: Resolver | None = None,
        policy: Policy | None = None,
        eject_for: float = DEFAULT_EJECT_FOR,
        listeners: Iterable[Listener] = (),
    ) -> None:
        # httpx.HTTPTransport.__init__ is not called: it would build a pool (and an SSL
        # context) only to throw it away. _pool is the one attribute its methods use.
        parts = _parts(resolver, policy, eject_for, listeners)
        self._parts = parts
        self._pool = build_pool(
            self._pools,
            ssl_context=httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env),
            proxy=proxy_of(proxy),
            limits=limits,
            http1=http1,
            http2=http2,
            uds=uds,
            local_address=local_address,
            # httpcore's connect retries would multiply the policy's (which retries every
            # connect failure) and sleep past the call's deadline: one layer, outlast's.
            retries=retries if parts.view is None else 0,
            socket_options=socket_options,
            backend=self._backend(parts),
        )
        self._routes = {}
        if parts.view is not None:
            self._keyed = parts.view._keyed()
            self._send = self._sender()

    def _sender(self) -> Any:
        """What one attempt calls: httpx's own ``handle_request`` (with chaos, if on)."""
        raise NotImplementedError

    def _backend(self, parts: _Parts) -> BackendT | None:
        """The network backend the pool dials through (None: httpcore's own)."""
        raise NotImplementedError

    def _route(self, raw: _RouteKey, url: httpx.URL, limit: float | None) -> _Route:
        """The route of ``url``'s origin, made or brought up to date (off the hot path).

        Asked through the policy's registry like ``for_key``, so the origin's breaker
        and budget are the ones ``policy.for_key(origin)`` shows.
        """
        routes = self._routes
        route = routes.get(raw)
        key = origin_of(url) if route is None else route.key
        view = self._keyed(key)
        limited = view if limit is None else view.within(limit)
        route = _Route(key, view, limit, limited)
        if raw not in routes and len(routes) >= _MAX_ROUTES:
            routes.clear()  # a transport for many origins: start afresh, keep it bounded
        routes[raw] = route
        return route

    @property
    def resolver(self) -> Resolver | None:
        """The resolver connections go through (None when outlast is disabled)."""
        return self._parts.resolver

    @property
    def policy(self) -> Policy | None:
        """The policy requests go through (None when outlast is disabled)."""
        return self._parts.policy


class Transport(_Face[httpcore.ConnectionPool, httpcore.NetworkBackend], httpx.HTTPTransport):
    """``httpx.HTTPTransport`` that resolves with outlast, fails over and applies a policy.

    Takes ``httpx.HTTPTransport``'s arguments, plus: ``resolver`` (default: the
    process's shared ``Resolver.from_env()`` for the ``OUTLAST_*`` configuration; a
    resolver you pass is yours to close), ``policy`` (default: the process's shared
    ``Policy.from_env()`` with HTTP classifiers; one breaker and budget per origin),
    ``eject_for`` (seconds an address that refused or timed out is tried last) and
    ``listeners`` (receive the transport's events, and those of the default resolver and
    policy, which are shared by the transports given the same listeners). ``retries``
    (httpcore's connect retries) is not used while outlast is on: the policy retries
    connect failures. With ``OUTLAST_DISABLE=1`` it is plain httpx.

    Added in 0.1.0.
    """

    _pools = SYNC_POOLS

    def _backend(self, parts: _Parts) -> httpcore.NetworkBackend | None:
        if parts.resolver is None or parts.outliers is None:
            return None
        dialer = None if parts.chaos is None else parts.chaos.sync_dialer
        return SyncBackend(parts.resolver, parts.outliers, parts.emitter, dialer=dialer)

    def _sender(self) -> Callable[[httpx.Request], httpx.Response]:
        send: Callable[[httpx.Request], httpx.Response] = super().handle_request
        chaos = self._parts.chaos
        return send if chaos is None else chaos.wrap(send)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._parts.listened or LOGGER.isEnabledFor(logging.DEBUG):
            return self._timed(request)  # someone sees the latency: measure it
        return self._handle_request(request)

    def _timed(self, request: httpx.Request) -> httpx.Response:
        started, status = time.perf_counter(), 0
        try:
            response = self._handle_request(request)
            status = response.status_code
            return response
        finally:
            seconds = time.perf_counter() - started
            self._parts.emitter.emit(
                RequestFinished.of(origin_of(request.url), request.method, status, seconds)
            )

    def _handle_request(self, request: httpx.Request) -> httpx.Response:
        parts = self._parts
        if parts.view is None:
            return super().handle_request(request)
        # The origin's route: a dict hit and the registry's check that its guard is current.
        ref = request.url._uri_reference
        raw = (ref.scheme, ref.host, ref.port)
        timeout = request.extensions.get("timeout")
        limit = _limit(timeout, parts.deadline)
        route = self._routes.get(raw)
        if route is None or route.limit != limit or self._keyed(route.key) is not route.view:
            route = self._route(raw, request.url, limit)
        view = route.limited
        if limit is None:
            attempts = _Attempts(self._send, request)
        else:  # the caller's timeout bounds the whole call
            attempts = _Attempts(self._send, request, time.monotonic() + limit)
            if _cut_first(timeout, limit):
                attempts._bound()
        token = HELD.set(attempts)
        try:
            response: httpx.Response = view.call(attempts.send)
        except _PolicyCircuitOpen as exc:
            raise _circuit_open(exc, request) from exc
        except BaseException:  # failed, or interrupted during the backoff: free the connection
            attempts.release()
            raise
        finally:
            HELD.reset(token)
            if attempts.timeouts is not None:
                attempts.restore()
        if response is attempts.freed:  # the policy hands back the last outcome it saw
            raise _refused(attempts, view)
        return response


class AsyncTransport(
    _Face[httpcore.AsyncConnectionPool, httpcore.AsyncNetworkBackend], httpx.AsyncHTTPTransport
):
    """``httpx.AsyncHTTPTransport`` that resolves with outlast, races addresses, applies a policy.

    The arguments are :class:`Transport`'s. Connections race the name's addresses by
    Happy Eyeballs (RFC 8305). Runs on asyncio and trio (through anyio), as httpx does.

    Added in 0.1.0.
    """

    _pools = ASYNC_POOLS

    def _backend(self, parts: _Parts) -> httpcore.AsyncNetworkBackend | None:
        if parts.resolver is None or parts.outliers is None:
            return None
        dialer = None if parts.chaos is None else parts.chaos.async_dialer
        return AsyncBackend(parts.resolver, parts.outliers, parts.emitter, dialer=dialer)

    def _sender(self) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
        send: Callable[[httpx.Request], Awaitable[httpx.Response]] = super().handle_async_request
        chaos = self._parts.chaos
        return send if chaos is None else chaos.awrap(send)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._parts.listened or LOGGER.isEnabledFor(logging.DEBUG):
            return await self._timed(request)
        return await self._handle_async_request(request)

    async def _timed(self, request: httpx.Request) -> httpx.Response:
        started, status = time.perf_counter(), 0
        try:
            response = await self._handle_async_request(request)
            status = response.status_code
            return response
        finally:
            seconds = time.perf_counter() - started
            self._parts.emitter.emit(
                RequestFinished.of(origin_of(request.url), request.method, status, seconds)
            )

    async def _handle_async_request(self, request: httpx.Request) -> httpx.Response:
        parts = self._parts
        if parts.view is None:
            return await super().handle_async_request(request)
        ref = request.url._uri_reference  # see Transport._handle_request
        raw = (ref.scheme, ref.host, ref.port)
        timeout = request.extensions.get("timeout")
        limit = _limit(timeout, parts.deadline)
        route = self._routes.get(raw)
        if route is None or route.limit != limit or self._keyed(route.key) is not route.view:
            route = self._route(raw, request.url, limit)
        view = route.limited
        if limit is None:
            attempts = _Attempts(self._send, request)
        else:  # the caller's timeout bounds the whole call
            attempts = _Attempts(self._send, request, time.monotonic() + limit)
            if _cut_first(timeout, limit):
                attempts._bound()
        token = HELD.set(attempts)
        try:
            response: httpx.Response = await view.acall(attempts.asend)
        except _PolicyCircuitOpen as exc:
            raise _circuit_open(exc, request) from exc
        except BaseException:  # failed, or cancelled during the backoff: free the connection
            await attempts.arelease()
            raise
        finally:
            HELD.reset(token)
            if attempts.timeouts is not None:
                attempts.restore()
        if response is attempts.freed:  # the policy hands back the last outcome it saw
            raise _refused(attempts, view)
        return response
