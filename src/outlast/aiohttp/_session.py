"""``outlast.aiohttp.ClientSession``: an aiohttp session resolving and retrying through outlast.

The session's connector is a ``TCPConnector`` with :class:`outlast.aiohttp.Resolver` and
aiohttp's own DNS cache off; a client middleware (aiohttp 3.12+) runs each request
through an :class:`outlast.Policy` bound to its origin (``scheme://host:port``), judged
by :mod:`outlast.aiohttp._classify`. A response that is retried is released before the
policy waits. While the origin's breaker is closed and the classifier is aiohttp's own,
the middleware makes the first attempt itself (``Policy._gate``) and only an error or a
status that may be retried goes to the policy (``Policy._afollow``). The attempts are
the middleware's alone: aiohttp's own re-send of an idempotent request after a
``ClientOSError`` or ``ServerDisconnectedError`` (which wraps every middleware, so would
double outlast's attempts) is turned off on the session, and the middleware re-sends
once, inside the attempt, on a kept-alive connection found closed (:func:`stale`).

The caller's ``ClientTimeout`` is the call's deadline, retries included
(:func:`deadline_of`): ``total`` when set (aiohttp's own timer ends the call; the
cancellation it sends is judged the destination's failure, then re-raised for aiohttp to
turn into its ``asyncio.TimeoutError``); else ``connect`` (or ``sock_connect``) plus
``sock_read``, at which a retry is cut (``aiohttp.ServerTimeoutError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import warnings
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Final

import aiohttp

from outlast import _root
from outlast._config import Settings
from outlast._exceptions import CircuitOpenError as _PolicyCircuitOpen
from outlast._exceptions import ConfigError
from outlast.aiohttp._classify import (
    CURRENT,
    IDEMPOTENT_METHODS,
    classify_error,
    classify_result,
    hold,
    never_sent,
    request_of,
    retry_safe,
)
from outlast.aiohttp._errors import CircuitOpenError
from outlast.aiohttp._resolver import Resolver
from outlast.dns import Resolver as _OutlastResolver
from outlast.policy import Classifier, Decision, Outcome, Policy, _testing, retry_all
from outlast.policy._classify import first_result

__all__ = ["POLICY_NAME", "ClientSession", "defaults", "middleware"]

POLICY_NAME: Final = "outlast.aiohttp"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


Handler = Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]]


def defaults() -> tuple[_OutlastResolver, Policy]:
    """The process's shared resolver and the shared ``outlast.aiohttp`` policy.

    One per ``OUTLAST_*`` configuration, built by the composition root (:mod:`outlast._root`).
    """
    resolver = _root.shared_resolver()
    policy = _root.shared_policy(
        POLICY_NAME, classify_error=classify_error, classify_result=classify_result
    )
    return resolver, policy


def origin_of(url: Any) -> str:
    """The key of a URL's breaker and budget: ``scheme://host:port``."""
    scheme = url.scheme.lower()
    port = url.port or _DEFAULT_PORTS.get(scheme, 0)
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


#: A request's own ``timeout=``, which only :class:`_Session` sees (aiohttp keeps it to
#: itself); None: the session's.
_TIMEOUT: Final[contextvars.ContextVar[Any]] = contextvars.ContextVar(
    "outlast.aiohttp.timeout", default=None
)
#: The policies' testing mode (``outlast.testing.set_testing``), read without a call: a
#: one-item list its setters change in place (were it gone: every call watched, as in it).
_TESTING: Final[list[Any]] = getattr(_testing, "_mode", [True])
#: A deadline the policy cannot retry within: the verdict on a call aiohttp's timer ended.
_AT_ONCE: Final = 1e-9
#: Seconds after the call began past which its first attempt has waited for the breaker.
_LATE: Final = 0.001


def release(request: aiohttp.ClientRequest) -> None:
    """Free the response of ``request``'s last attempt (it is about to be retried)."""
    last: aiohttp.ClientResponse | None = request.__dict__.pop("outlast_last", None)
    if last is not None:
        last.release()
        request.outlast_freed = last  # type: ignore[attr-defined]


def _timer_fired(request: aiohttp.ClientRequest) -> bool:
    """Whether aiohttp's own ``ClientTimeout.total`` timer has cancelled ``request``.

    aiohttp ends a call that outlives ``total`` by cancelling its task (then turns the
    cancellation into ``asyncio.TimeoutError`` on its way out): the request's timer
    context knows it fired. False when the installed aiohttp keeps no such timer.
    """
    timer = getattr(request, "_timer", None)
    if timer is None:
        return False
    try:
        timer.assert_timeout()
    except asyncio.TimeoutError:
        return True
    return False


async def _timed_out(request: aiohttp.ClientRequest) -> None:
    """The attempt aiohttp's ``total`` timer ended, replayed for the policy's verdict."""
    error = asyncio.TimeoutError()
    error.outlast_request = request  # type: ignore[attr-defined]
    raise error


async def _judge_timeout(bound: Policy, request: aiohttp.ClientRequest) -> None:
    """Tell the origin's breaker that a call ran out of the caller's ``total``.

    aiohttp's timer cancels the call's task: the policy sees a cancellation, which is
    no verdict. This replays the attempt's end as ``asyncio.TimeoutError`` through the
    policy (no retry is possible: the deadline is spent), so it is judged the
    destination's failure as a read timeout is; a half-open probe that hung is failed.
    It never suspends (the replay raises at once), so it runs whole inside the
    cancellation. The budget counts it as one more call.
    """
    if bound.state == "open":
        # Opened while this call ran (a probe's own cut leaves it half-open, its slot
        # freed): a late report, which the breaker ignores, not a probe's verdict.
        return
    # Raised once judged; or the breaker is open already (another call's verdict).
    with contextlib.suppress(asyncio.TimeoutError, _PolicyCircuitOpen):
        await bound.within(_AT_ONCE).acall(_timed_out, request)


class _Tries:
    """The attempts of a call that needs watching between them: testing mode (no sleep
    frees a retried response) or a deadline without ``total`` (``at``, the event loop's
    clock), at which retries are cut. The first attempt runs untouched, unless it begins
    after ``late`` (it waited for the breaker): then the deadline cuts it too."""

    __slots__ = ("at", "count", "fired", "late")

    def __init__(self, at: float | None, late: float | None = None) -> None:
        self.at = at
        self.late = late
        self.count = 0
        self.fired = False

    def expire(self, task: asyncio.Task[Any]) -> None:
        self.fired = True
        task.cancel()


async def _attempt(
    handler: Handler, request: aiohttp.ClientRequest, tries: _Tries
) -> aiohttp.ClientResponse:
    """One attempt of a watched call (:class:`_Tries`)."""
    tries.count += 1
    loop = asyncio.get_running_loop()
    if tries.count == 1:
        if tries.late is None or loop.time() < tries.late:
            return await handler(request)
    else:  # (a first attempt made late had waited for the breaker: cut at the deadline)
        release(request)  # testing mode skips the sleep that frees the last response
    at = tries.at
    if at is None:
        return await handler(request)
    task = asyncio.current_task()
    if at <= loop.time() or task is None:
        unsent = _cut_short(request, None)
        unsent.outlast_unsent = True  # type: ignore[attr-defined]  # nothing reached it: neutral
        raise unsent
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+ counts cancellations
    before = 0 if cancelling is None else cancelling()
    timer = loop.call_at(at, tries.expire, task)
    try:
        return await handler(request)
    except asyncio.CancelledError as exc:
        if not tries.fired:
            raise  # the caller's own cancellation: no verdict
        uncancel = getattr(task, "uncancel", None)
        if uncancel is not None and uncancel() > before:
            raise  # the caller cancelled too (in the same turn): theirs goes on
        raise _cut_short(request, exc) from exc
    finally:
        timer.cancel()


def _cut_short(request: aiohttp.ClientRequest, cause: BaseException | None) -> Exception:
    error = aiohttp.ServerTimeoutError(
        f"Timeout: the call's deadline passed before a retry of {request.url} ended"
    )
    error.outlast_request = request  # type: ignore[attr-defined]
    error.__cause__ = cause
    return error


def deadline_of(timeout: Any) -> float | None:
    """The seconds a whole call may take under an ``aiohttp.ClientTimeout``, or None.

    ``total`` when it is set; else, when ``sock_read`` is, the longest one attempt may
    wait under its per-attempt timeouts: ``connect`` (else ``sock_connect``, else 0)
    plus ``sock_read``; else None (only the policy's ``Retry.deadline`` bounds the call).
    """
    if timeout is None:
        return None
    total = timeout.total
    if total:
        return float(total)
    read = timeout.sock_read
    if read:
        return float((timeout.connect or timeout.sock_connect or 0) + read)
    return None


def _releasing(
    asleep: Callable[[float], Awaitable[None]],
) -> Callable[[float], Awaitable[None]]:
    async def release_then_sleep(seconds: float) -> None:
        request = CURRENT.get()
        if request is not None:
            release(request)
        try:
            await asleep(seconds)
        except BaseException:
            if request is not None:  # ended in outlast's own wait: no attempt was running
                request.outlast_idle = True
            raise

    return release_then_sleep


def _vetoed(classify: Classifier) -> Classifier:
    def classify_vetoed(outcome: Outcome, /) -> Decision:
        error = outcome.error
        if getattr(error, "outlast_unsent", False):
            return Decision.NEUTRAL  # a retry cut at the deadline before it was sent
        decision = classify(outcome)
        if not decision.retry or never_sent(error):
            return decision
        result = outcome.result
        if error is None and isinstance(result, aiohttp.ClientResponse):
            request = hold(result)  # to be freed before the retry
        else:
            request = request_of(error if error is not None else result)
        if request is None:
            request = getattr(error if error is not None else result, "request", None)
        if retry_safe(request):
            return decision
        return dataclasses.replace(decision, retry=False)

    return classify_vetoed


def _view(policy: Policy) -> Policy:
    """``policy`` with aiohttp's classifiers where it has the defaults, the HTTP safety
    rule over any others (aiohttp's own apply it already), and a releasing sleep."""
    error = classify_error if policy.classify_error is retry_all else policy.classify_error
    result = classify_result if policy.classify_result is None else policy.classify_result
    _, asleep = policy.sleeps
    return policy.derive(
        classify_error=error if error is classify_error else _vetoed(error),
        classify_result=result if result is classify_result else _vetoed(result),
        asleep=_releasing(asleep),
    )


#: The middlewares :func:`middleware` made: an outlast session keeps its own on every request.
_OURS: Final[weakref.WeakSet[Callable[..., Any]]] = weakref.WeakSet()
#: How many (origin, deadline) routes one middleware keeps before starting afresh.
_MAX_ROUTES: Final = 1024


def middleware(policy: Policy) -> Callable[[aiohttp.ClientRequest, Handler], Awaitable[Any]]:
    """An aiohttp client middleware running each request through ``policy`` per origin.

    ``policy``'s classifiers left at ``Policy``'s defaults are replaced by aiohttp's
    (:func:`outlast.aiohttp.classify_error` / ``classify_result``); a request the
    server may have seen is retried only when it is safe. The session's
    ``ClientTimeout`` is the call's deadline, retries included (see docs/aiohttp.md);
    a request's own ``timeout=`` is seen only through :func:`outlast.aiohttp.ClientSession`.
    Raises :class:`outlast.aiohttp.CircuitOpenError` when the origin's breaker is open.

    Added in 0.1.0.
    """
    if not isinstance(policy, Policy):
        raise ConfigError("policy", policy, "an outlast.Policy")
    return _middleware(policy, [None, None])


class _Route:
    """What the requests to one origin under one deadline go through, kept between them.

    ``bound``: the policy's view for the origin (``base``), with the deadline when there
    is one; ``registry``/``guard``: where ``base``'s state is held (``Policy._held``),
    checked per request instead of asking ``for_key`` again. Immutable.
    """

    __slots__ = ("bound", "guard", "origin", "registry")

    def __init__(self, origin: str, base: Policy, limit: float | None) -> None:
        self.origin = origin
        self.bound = base if limit is None else base.within(limit)
        held = base._held()
        self.registry: Any = None if held is None else held[0]
        self.guard: Any = None if held is None else held[1]


def _middleware(
    policy: Policy, session_timeout: list[Any]
) -> Callable[[aiohttp.ClientRequest, Handler], Awaitable[Any]]:
    """:func:`middleware`; ``session_timeout``, once set, is the session's ``ClientTimeout``
    and its :func:`deadline_of` (until then each request asks its session)."""
    view = _view(policy)
    keyed = view._keyed()
    # aiohttp's own result classifier: a response below 429 (or 430-499) is accepted
    # without asking it, so a plain request's first attempt is made here, not in acall
    quick = view._core.rules.classify_result is classify_result
    # (host, port, scheme, deadline) -> its route; rebuilt when the origin's state in the
    # policy's registry is no longer the one the route holds (evicted meanwhile).
    routes: dict[tuple[Any, ...], _Route] = {}

    def route_of(slot: tuple[Any, ...], url: Any, limit: float | None) -> _Route:
        known = routes.get(slot)
        origin = origin_of(url) if known is None else known.origin
        route = _Route(origin, keyed(origin), limit)
        if known is None and len(routes) >= _MAX_ROUTES:
            routes.clear()  # a session for many origins: start afresh, keep it bounded
        routes[slot] = route
        return route

    async def outlast_middleware(
        request: aiohttp.ClientRequest, handler: Handler
    ) -> aiohttp.ClientResponse:
        given = _TIMEOUT.get()
        if given is None:
            given, limit = session_timeout
            if given is None:  # middleware() on a session it was not built with
                given = getattr(getattr(request, "session", None), "timeout", None)
                limit = deadline_of(given)
        else:
            limit = deadline_of(given)
        url = request.url
        slot = (url.raw_host, url.port, url.scheme, limit)
        route = routes.get(slot)
        if route is None:
            route = route_of(slot, url, limit)
        else:
            registry = route.registry
            if registry is not None:  # the origin's state is current: touch it, as for_key does
                if registry.get(route.origin) is route.guard:
                    try:
                        registry.move_to_end(route.origin)
                    except KeyError:  # evicted meanwhile, by another thread
                        route = route_of(slot, url, limit)
                else:  # evicted (and maybe made afresh): ask the policy again
                    route = route_of(slot, url, limit)
        bound = route.bound
        plain = (limit is None or given.total) and _TESTING[0] is None
        if plain and quick:
            started = bound._gate()
            if started is not None:  # the breaker is closed: the first attempt is made here
                # an earlier pass's connection (an outer middleware sending it again)
                request.__dict__.pop("outlast_opened", None)
                try:
                    try:
                        response = await handler(request)
                    except Exception as exc:
                        response = await _again(handler, request, exc)  # or raises
                except Exception as exc:
                    first = Outcome(1, error=exc)
                    return await _follow(bound, started, first, _resending(handler), request)
                except BaseException as exc:  # cancelled: no verdict, unless aiohttp's timer
                    await _failed(bound, request, exc)
                    raise
                status = response.status
                if status < 429 or 429 < status < 500:  # classify_result's first rule
                    bound._accepted()
                    return response
                first = first_result(response)
                return await _follow(bound, started, first, _resending(handler), request)
        send = _resending(handler)
        if plain:
            return await _judged(bound, request, bound.acall(send, request))
        now = _now()
        at = late = None
        if limit is not None and not given.total:
            at, late = now + limit, now + _LATE
        tries = _Tries(at, late)
        return await _judged(bound, request, bound.acall(_attempt, send, request, tries))

    _OURS.add(outlast_middleware)
    return outlast_middleware


class _Connector(aiohttp.TCPConnector):
    """``aiohttp.TCPConnector`` marking the request that opens a connection
    (``outlast_opened``): a send that fails on a connection it did not open reused a
    kept-alive one (:func:`stale`). Nothing per request: a
    connection is opened far less often than it is reused."""

    async def _create_connection(
        self, req: aiohttp.ClientRequest, traces: Any, timeout: aiohttp.ClientTimeout
    ) -> Any:
        req.outlast_opened = True  # type: ignore[attr-defined]
        return await super()._create_connection(req, traces, timeout)


#: What a send on a kept-alive connection closed under it raises (aiohttp's own re-send
#: of an idempotent request catches these).
_STALE_ERRORS: Final = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def stale(request: Any, error: BaseException) -> bool:
    """Whether ``error`` ended a send on a kept-alive connection the server had closed,
    and ``request`` may be sent again at once (then it is marked: once per call).

    A connection the pool handed back may have been closed by the server (its idle
    timeout) just as it was reused: the send then fails with ``ServerDisconnectedError``
    or ``ClientOSError``, through no fault of the destination. aiohttp re-sends an
    idempotent request once after either (RFC 9112, section 9.3.1.1); outlast does the
    same, uncounted, when the request went through an outlast session's connector
    (:class:`_Connector`), which marks the request that opens a connection, and this
    attempt opened none; and when repeating is safe: an idempotent method or an
    ``Idempotency-Key``, and a body aiohttp can send again (bytes, or a payload it
    rewinds, such as a file: :func:`_rewound` then waits for the failed send to let go
    of it). Through any other connector (:func:`middleware` on a session of the
    user's) reuse is not known, and nothing is re-sent.
    """
    if not isinstance(error, _STALE_ERRORS) or never_sent(error):
        return False
    if not isinstance(getattr(getattr(request, "session", None), "connector", None), _Connector):
        return False
    marks = getattr(request, "__dict__", None)
    if marks is None or "outlast_resent" in marks or marks.pop("outlast_opened", False):
        return False
    if request.method not in IDEMPOTENT_METHODS and "Idempotency-Key" not in request.headers:
        return False
    body = request.body
    if body != b"" and getattr(body, "consumed", True) and not retry_safe(request):
        return False  # consumed (or unknown, before aiohttp 3.12), and not bytes
    marks["outlast_resent"] = True
    return True


async def _rewound(request: aiohttp.ClientRequest) -> bool:
    """After :func:`stale`: ready ``request`` to be sent again; False if it cannot be.

    As aiohttp before its own re-send: the failed send's body writer is waited for (a
    file is rewound by the next send, not while that one still reads it), then the body
    must not be consumed (a stream's is). A wait for ``100 Continue`` that the failed
    send ended is made afresh: the re-send waits for its own.
    """
    body = request.body
    if body != b"":
        await request.close()
        if getattr(body, "consumed", False):
            return False
    _expect_afresh(request)
    return True


def _expect_afresh(request: aiohttp.ClientRequest) -> None:
    """A request sent again waits for its own ``100 Continue``: the wait of an earlier
    send, ended (cancelled with that send, or answered), is made afresh."""
    waiter = getattr(request, "_continue", None)
    if isinstance(waiter, asyncio.Future) and waiter.done():
        request._continue = asyncio.get_running_loop().create_future()


def _resending(handler: Handler) -> Handler:
    """``handler``, sending a request once more at once when a kept-alive connection
    turns out closed (:func:`stale`): within the attempt,
    so neither the policy nor the breaker counts it."""

    async def send(request: aiohttp.ClientRequest) -> aiohttp.ClientResponse:
        request.__dict__.pop("outlast_opened", None)  # an earlier attempt's connection
        _expect_afresh(request)  # a retry waits for its own 100 Continue
        try:
            return await handler(request)
        except Exception as exc:
            return await _again(handler, request, exc)

    return send


async def _again(
    handler: Handler, request: aiohttp.ClientRequest, error: Exception
) -> aiohttp.ClientResponse:
    """After a send of ``request`` failed with ``error``: send it once more at once when
    that was a kept-alive connection found closed and the request can go again
    (:func:`stale`, :func:`_rewound`); else raise ``error``."""
    if stale(request, error) and await _rewound(request):
        return await handler(request)
    raise error


async def _follow(
    bound: Policy, started: float, first: Outcome, handler: Handler, request: aiohttp.ClientRequest
) -> aiohttp.ClientResponse:
    """The rest of a call whose first attempt the middleware made itself
    (``Policy._gate``) and whose outcome needs a look: an error, or a status that may
    be retried. The policy judges it, and retries it or not."""
    return await _judged(bound, request, bound._afollow(started, first, handler, request))


async def _judged(
    bound: Policy, request: aiohttp.ClientRequest, call: Awaitable[aiohttp.ClientResponse]
) -> aiohttp.ClientResponse:
    """Await ``call`` (the policy at work on ``request``) where its classifiers and its
    releasing sleep find the request (:data:`CURRENT`); then free what it held."""
    token = CURRENT.set(request)
    try:
        response = await call
    except BaseException as exc:
        await _failed(bound, request, exc)
        raise
    finally:
        CURRENT.reset(token)
    return _checked(bound, request, response)


async def _failed(bound: Policy, request: aiohttp.ClientRequest, exc: BaseException) -> None:
    """A call that raised ``exc``: free what it held; a call aiohttp's ``total`` timer
    cancelled during an attempt is judged the destination's failure (then the caller
    re-raises ``exc``, and aiohttp turns a cancellation into its own timeout)."""
    _settle(request, None)
    if isinstance(exc, asyncio.CancelledError):
        idle = request.__dict__.pop("outlast_idle", False)  # in a backoff, not an attempt
        if _timer_fired(request) and not idle:  # aiohttp's total ended an attempt:
            await _judge_timeout(bound, request)  # the destination's failure
    elif isinstance(exc, _PolicyCircuitOpen):
        raise CircuitOpenError(exc.name, exc.retry_after) from exc


def _checked(
    bound: Policy, request: aiohttp.ClientRequest, response: aiohttp.ClientResponse
) -> aiohttp.ClientResponse:
    """The response a call ends with, once what an earlier attempt held is freed."""
    held = request.__dict__  # a status that may be retried came back on the way:
    if ("outlast_last" in held or "outlast_freed" in held) and _settle(request, response):
        raise CircuitOpenError(bound.key, bound.retry_after())  # freed, then refused
    return response


def _now() -> float:
    return asyncio.get_running_loop().time()


def _settle(request: aiohttp.ClientRequest, response: aiohttp.ClientResponse | None) -> bool:
    """After the policy: free a response held that is not the one returned; say whether
    the one returned had been freed for a retry the breaker then refused."""
    held = request.__dict__
    last = held.pop("outlast_last", None)
    if last is not None and last is not response:
        last.release()
    freed = held.pop("outlast_freed", None)
    return response is not None and response is freed


def _keeping_ours(given: Iterable[Any], session: Iterable[Any]) -> tuple[Any, ...]:
    """A request's own ``middlewares`` with the session's outlast one innermost."""
    given = tuple(given)
    if any(one in _OURS for one in given):
        return given
    return (*given, *(one for one in session if one in _OURS))


with warnings.catch_warnings():
    # aiohttp warns on any subclass; this one only keeps outlast's middleware per request.
    warnings.simplefilter("ignore", DeprecationWarning)

    class _Session(aiohttp.ClientSession):
        """``aiohttp.ClientSession`` whose requests keep outlast's middleware.

        aiohttp lets a request's ``middlewares=`` replace the session's; outlast's policy
        would be dropped with them (no retry, no breaker). Here it stays, innermost.
        """

        def _request(  # returns aiohttp's own coroutine: no frame of ours per request
            self, method: str, str_or_url: Any, **kwargs: Any
        ) -> Coroutine[Any, Any, aiohttp.ClientResponse]:
            if "middlewares" in kwargs or "timeout" in kwargs:
                return self._outlast_request(method, str_or_url, kwargs)
            return super()._request(method, str_or_url, **kwargs)  # no frame of ours

        async def _outlast_request(
            self, method: str, str_or_url: Any, kwargs: dict[str, Any]
        ) -> aiohttp.ClientResponse:
            given = kwargs.get("middlewares")
            if given is not None:
                kwargs["middlewares"] = _keeping_ours(given, self._middlewares)
            token = None
            if "timeout" in kwargs:  # as aiohttp reads it: a number (or None) is ``total``
                timeout = kwargs["timeout"]
                if not isinstance(timeout, aiohttp.ClientTimeout):
                    timeout = aiohttp.ClientTimeout(total=timeout)
                token = _TIMEOUT.set(timeout)
            try:
                return await super()._request(method, str_or_url, **kwargs)
            finally:
                if token is not None:
                    _TIMEOUT.reset(token)


def ClientSession(
    *,
    resolver: _OutlastResolver | None = None,
    policy: Policy | None = None,
    connector_options: Mapping[str, Any] | None = None,
    listeners: Iterable[Any] = (),
    **kwargs: Any,
) -> aiohttp.ClientSession:
    """An ``aiohttp.ClientSession`` that resolves through outlast and applies its policy.

    Keyword arguments are ``aiohttp.ClientSession``'s (``middlewares`` given are run
    outside outlast's, and so are a request's own ``middlewares=``, which in aiohttp
    replace the session's: outlast's policy stays, innermost), plus: ``resolver``
    (default: the process's shared resolver),
    ``policy`` (default: the shared ``outlast.aiohttp`` policy from ``OUTLAST_*``; one
    breaker and budget per origin) and ``connector_options`` (keyword arguments for the
    ``aiohttp.TCPConnector`` built here, such as ``limit`` or ``ssl``; its
    ``resolver`` and ``use_dns_cache`` are outlast's). ``listeners`` is accepted for
    symmetry with the other integrations (the resolver's and policy's own listeners
    report their events). A ``connector`` cannot be given: build
    ``TCPConnector(resolver=outlast.aiohttp.Resolver(), use_dns_cache=False)`` and pass
    :func:`middleware` yourself instead. With ``OUTLAST_DISABLE=1`` it is a plain
    ``aiohttp.ClientSession``. Call it inside a running event loop, as aiohttp's.
    Raises :class:`outlast.ConfigError` for a bad argument.

    Added in 0.1.0.
    """
    if "connector" in kwargs:
        raise ConfigError(
            "connector",
            kwargs["connector"],
            "no connector: outlast builds the TCPConnector (pass connector_options=)",
        )
    options = dict(connector_options or {})
    for owned in ("resolver", "use_dns_cache"):
        if owned in options:
            raise ConfigError(
                f"connector_options[{owned!r}]", options[owned], "left to outlast (omit it)"
            )
    if policy is not None and not isinstance(policy, Policy):
        raise ConfigError("policy", policy, "an outlast.Policy or None")
    chosen = Resolver(resolver) if resolver is not None else None  # validates early
    if Settings.from_env().disable:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(**options), **kwargs)
    if chosen is None or policy is None:
        shared_resolver, shared_policy = defaults()
        chosen = chosen if chosen is not None else Resolver(shared_resolver)
        policy = policy if policy is not None else shared_policy
    connector = _Connector(resolver=chosen, use_dns_cache=False, **options)
    session_timeout: list[Any] = [None, None]
    ours = _middleware(policy, session_timeout)
    middlewares = (*kwargs.pop("middlewares", ()), ours)
    session = _Session(connector=connector, middlewares=middlewares, **kwargs)
    if hasattr(session, "_retry_connection"):
        # aiohttp re-sends an idempotent request once, through every middleware, after
        # a ClientOSError or ServerDisconnectedError on any connection: with outlast's
        # attempts inside, that doubles them. The policy retries those itself, and the
        # middleware re-sends at once, uncounted, on a kept-alive connection found closed.
        session._retry_connection = False
    # fixed for the session's life: read once, not per request
    session_timeout[:] = [session.timeout, deadline_of(session.timeout)]
    return session
