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

import contextvars
import dataclasses
import logging
import os
import ssl
import time
from collections import OrderedDict
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
from outlast.http._rules import HELD, Held, http_view, quick_results, retry_after
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
    quick: bool = False  # the view retries no response below 500 but 429 (see _Attempts)


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
    quick = quick_results(view)
    return _Parts(
        resolver, policy, outliers, emitter, view, chaos, bool(listeners), deadline, quick
    )


def _circuit_open(exc: _PolicyCircuitOpen, request: httpx.Request) -> CircuitOpenError:
    return CircuitOpenError(exc.name, exc.retry_after, request=request)


#: The shortest timeout an attempt is given when its deadline has (nearly) passed: httpcore
#: reads 0 as "do not block", which is not "give up now".
_LEAST_TIMEOUT: Final = 0.001


#: A route's cache key: the raw parts of a URL that its origin is made of. httpx's
#: ``URL.host`` / ``URL.port`` properties decode on every read; the parsed reference
#: they read from does not (``_uri_reference``, httpx 0.28 and 1.0's URL).
_RouteKey = tuple[str, str, "int | None"]
#: Most origins a transport remembers the policy view of (then it starts afresh).
_MAX_ROUTES: Final = 256


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


class _Route:
    """An origin's policy handle, kept by a transport for the requests to that origin.

    ``key``: the origin (``origin_of``); ``view``: the policy bound to that key's guard,
    ``limited``: the same with the deadline of ``timeout`` (the httpx timeouts of the
    last request, whose ``limit`` it is); ``cut``: whether a first attempt's timeouts
    must be cut to it (a phase is unbounded or longer). ``held``: where the policy holds
    the guard (its registry and the guard), None if it never goes stale.

    Immutable, so threads read it whole; the transport makes a new one when the key
    was evicted from the registry (and made afresh) or a request brings other timeouts.
    """

    __slots__ = ("cut", "guard", "key", "limit", "limited", "registry", "timeout", "view")

    def __init__(
        self, key: str, view: Policy, timeout: object, limit: float | None, limited: Policy
    ) -> None:
        self.key = key
        self.view = view
        self.timeout = dict(timeout) if isinstance(timeout, dict) else timeout
        self.limit = limit
        self.limited = limited
        self.cut = (
            limit is not None
            and isinstance(timeout, dict)
            and any(value is None or value > limit for value in timeout.values())
        )
        held = view._held()
        self.registry: OrderedDict[str, Any] | None = None if held is None else held[0]
        self.guard: object = None if held is None else held[1]


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

    The policy's sleep finds the attempts through :data:`HELD` to free the response it
    is about to retry. They are put there only once a response is kept that the policy
    may retry: with the transport's own classifier (``quick``), a 5xx or a 429; with
    another, any. A request whose first response is accepted never touches ``HELD``.
    """

    __slots__ = (
        "deadline",
        "freed",
        "last",
        "quick",
        "request",
        "send_once",
        "sent",
        "timeouts",
        "token",
    )

    def __init__(
        self,
        send_once: Callable[[httpx.Request], Any],
        request: httpx.Request,
        deadline: float | None = None,
        quick: bool = False,
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
        self.quick = quick  # the policy retries no response below 500 but 429
        self.token: contextvars.Token[Held | None] | None = None  # set in HELD, to reset

    def unhold(self) -> None:
        """Take the attempts out of :data:`HELD` (the call is over)."""
        if self.token is not None:
            HELD.reset(self.token)
            self.token = None

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

    def _retry(self) -> None:
        """Before a retry: cut its timeouts to what remains, or, when the deadline has
        passed already (the backoff overran it: a busy thread or loop), raise
        ``httpx.TimeoutException`` without sending it. That error is neutral
        (:func:`outlast.http.classify_error`): nothing reached the destination, so
        nothing is counted against it, and there is no time left to retry."""
        deadline = self.deadline
        if deadline is not None and deadline <= time.monotonic():
            error = httpx.TimeoutException(
                f"Timeout: the call's deadline passed before a retry of {self.request.url} "
                "was sent",
                request=self.request,
            )
            # neutral whoever classifies (keep_error_rules): it never left
            error.outlast_unsent = True  # type: ignore[attr-defined]
            raise error
        self._bound()

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
            self._retry()
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
        self.last = response  # freed if retried; the sleep must find it if it may be
        if self.token is None and (
            not self.quick or response.status_code >= 500 or response.status_code == 429
        ):
            self.token = HELD.set(self)
        return response

    async def asend(self) -> httpx.Response:
        if self.sent:
            await self.arelease()
            self._retry()
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
        self.last = response  # freed if retried; the sleep must find it if it may be
        if self.token is None and (
            not self.quick or response.status_code >= 500 or response.status_code == 429
        ):
            self.token = HELD.set(self)
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

    def _begin(self, request: httpx.Request) -> tuple[Policy, _Attempts, float | None]:
        """What one request goes through: its origin's view of the policy, its attempts,
        and when it started (``time.perf_counter()``) if someone sees its latency (a
        listener, or DEBUG logging), else None: nobody sees it, nothing is measured.

        The seconds the whole call may take are connect + read of httpx's timeout, or
        ``Retry.deadline`` (``OUTLAST_RETRY_DEADLINE``) if tighter; neither: unbounded.
        For a known origin and the same timeouts as its last request this is two dict
        hits and the registry's word that the origin's guard is current (and its key
        touched, as ``for_key`` does): no lookup, no object but the attempts.
        """
        started = (
            time.perf_counter()
            if self._parts.listened or LOGGER.isEnabledFor(logging.DEBUG)
            else None
        )
        timeout = request.extensions.get("timeout")
        ref = request.url._uri_reference
        raw = (ref.scheme, ref.host, ref.port)
        route = self._routes.get(raw)
        if route is None or timeout != route.timeout:
            route = self._route(raw, request, timeout)
        else:
            registry = route.registry
            if registry is not None:  # the key's guard is current: touch it, as for_key does
                if registry.get(route.key) is route.guard:
                    try:
                        registry.move_to_end(route.key)
                    except KeyError:  # evicted meanwhile, by another thread
                        route = self._route(raw, request, timeout)
                else:  # evicted (and maybe made afresh): ask the policy again
                    route = self._route(raw, request, timeout)
        limit = route.limit
        if limit is None:
            return route.limited, _Attempts(self._send, request, None, self._parts.quick), started
        attempts = _Attempts(self._send, request, time.monotonic() + limit, self._parts.quick)
        if route.cut:  # a phase could outlast the deadline: cut the first attempt's too
            attempts._bound()
        return route.limited, attempts, started

    def _end(
        self,
        request: httpx.Request,
        attempts: _Attempts,
        response: httpx.Response | None,
        started: float | None,
    ) -> None:
        """After a request, sync or async: put back what the attempts changed, report it."""
        if attempts.token is not None:
            attempts.unhold()
        if attempts.timeouts is not None:
            attempts.restore()
        if started is not None:
            self._finished(request, None if response is attempts.freed else response, started)

    def _finished(
        self, request: httpx.Request, response: httpx.Response | None, started: float
    ) -> None:
        """Report a request's latency and status (0: it raised) to whoever sees it."""
        seconds = time.perf_counter() - started
        status = 0 if response is None else response.status_code
        self._parts.emitter.emit(
            RequestFinished.of(origin_of(request.url), request.method, status, seconds)
        )

    def _route(self, raw: _RouteKey, request: httpx.Request, timeout: object) -> _Route:
        """The route of ``request``'s origin, made or brought up to date (off the hot path).

        Asked through the policy's registry like ``for_key``, so the origin's breaker
        and budget are the ones ``policy.for_key(origin)`` shows.
        """
        routes = self._routes
        route = routes.get(raw)
        key = origin_of(request.url) if route is None else route.key
        view = self._keyed(key)
        limit = _limit(timeout, self._parts.deadline)
        limited = view if limit is None else view.within(limit)
        route = _Route(key, view, timeout, limit, limited)
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
        if self._parts.view is None:
            return self._unguarded(request)
        view, attempts, started = self._begin(request)
        response: httpx.Response | None = None
        try:
            response = view.call(attempts.send)
        except _PolicyCircuitOpen as exc:
            raise _circuit_open(exc, request) from exc
        except BaseException:  # failed, or interrupted during the backoff: free the connection
            attempts.release()
            raise
        finally:
            self._end(request, attempts, response, started)
        if response is attempts.freed:  # the policy hands back the last outcome it saw
            raise _refused(attempts, view)
        return response

    def _unguarded(self, request: httpx.Request) -> httpx.Response:
        """Outlast is off (``OUTLAST_DISABLE=1``): httpx's own, its latency still reported."""
        if not (self._parts.listened or LOGGER.isEnabledFor(logging.DEBUG)):
            return super().handle_request(request)
        started, response = time.perf_counter(), None
        try:
            response = super().handle_request(request)
            return response
        finally:
            self._finished(request, response, started)


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
        if self._parts.view is None:
            return await self._unguarded(request)
        view, attempts, started = self._begin(request)
        response: httpx.Response | None = None
        try:
            response = await view.acall(attempts.asend)
        except _PolicyCircuitOpen as exc:
            raise _circuit_open(exc, request) from exc
        except BaseException:  # failed, or cancelled during the backoff: free the connection
            await attempts.arelease()
            raise
        finally:
            self._end(request, attempts, response, started)
        if response is attempts.freed:  # the policy hands back the last outcome it saw
            raise _refused(attempts, view)
        return response

    async def _unguarded(self, request: httpx.Request) -> httpx.Response:
        """Outlast is off (``OUTLAST_DISABLE=1``): httpx's own, its latency still reported."""
        if not (self._parts.listened or LOGGER.isEnabledFor(logging.DEBUG)):
            return await super().handle_async_request(request)
        started, response = time.perf_counter(), None
        try:
            response = await super().handle_async_request(request)
            return response
        finally:
            self._finished(request, response, started)
