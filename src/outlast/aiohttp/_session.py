"""``outlast.aiohttp.ClientSession``: an aiohttp session resolving and retrying through outlast.

The session's connector is a ``TCPConnector`` with :class:`outlast.aiohttp.Resolver` and
aiohttp's own DNS cache off; a client middleware (aiohttp 3.12+) runs each request
through an :class:`outlast.Policy` bound to its origin (``scheme://host:port``), judged
by :mod:`outlast.aiohttp._classify`. A response that is retried is released before the
policy waits. The attempts are the middleware's: aiohttp itself never retries a
request (beyond re-sending once on a pooled connection the server had closed).
"""

from __future__ import annotations

import contextvars
import dataclasses
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import aiohttp

from outlast import _root
from outlast._config import Settings
from outlast._exceptions import CircuitOpenError as _PolicyCircuitOpen
from outlast._exceptions import ConfigError
from outlast.aiohttp._classify import (
    RETRY_STATUSES,
    classify_error,
    classify_result,
    never_sent,
    retry_safe,
)
from outlast.aiohttp._errors import CircuitOpenError
from outlast.aiohttp._resolver import Resolver
from outlast.dns import Resolver as _OutlastResolver
from outlast.policy import Classifier, Decision, Outcome, Policy, retry_all

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


class _Attempts:
    """One request's attempts: sends it, tags the response, releases it before a retry."""

    __slots__ = ("freed", "handler", "last", "request")

    def __init__(self, handler: Handler, request: aiohttp.ClientRequest) -> None:
        self.handler = handler
        self.request = request
        self.last: aiohttp.ClientResponse | None = None
        self.freed: aiohttp.ClientResponse | None = None

    def release(self) -> None:
        last = self.last
        if last is not None:
            last.release()
            self.freed, self.last = last, None

    async def __call__(self) -> aiohttp.ClientResponse:
        self.release()
        try:
            response = await self.handler(self.request)
        except Exception as exc:
            exc.outlast_request = self.request  # type: ignore[attr-defined]  # for the classifiers
            raise
        if response.status in RETRY_STATUSES:  # what the classifiers read, when they read it
            response.outlast_request = self.request  # type: ignore[attr-defined]
        self.last = response
        return response


_HELD: Final[contextvars.ContextVar[_Attempts | None]] = contextvars.ContextVar(
    "outlast.aiohttp.held", default=None
)


def _releasing(
    asleep: Callable[[float], Awaitable[None]],
) -> Callable[[float], Awaitable[None]]:
    async def release_then_sleep(seconds: float) -> None:
        held = _HELD.get()
        if held is not None:
            held.release()
        await asleep(seconds)

    return release_then_sleep


def _vetoed(classify: Classifier) -> Classifier:
    def classify_vetoed(outcome: Outcome, /) -> Decision:
        error = outcome.error
        decision = classify(outcome)
        if not decision.retry or never_sent(error):
            return decision
        carrier = error if error is not None else outcome.result
        request = getattr(carrier, "outlast_request", None) or getattr(carrier, "request", None)
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


def middleware(policy: Policy) -> Callable[[aiohttp.ClientRequest, Handler], Awaitable[Any]]:
    """An aiohttp client middleware running each request through ``policy`` per origin.

    ``policy``'s classifiers left at ``Policy``'s defaults are replaced by aiohttp's
    (:func:`outlast.aiohttp.classify_error` / ``classify_result``); a request the
    server may have seen is retried only when it is safe. Raises
    :class:`outlast.aiohttp.CircuitOpenError` when the origin's breaker is open.

    Added in 0.1.0.
    """
    if not isinstance(policy, Policy):
        raise ConfigError("policy", policy, "an outlast.Policy")
    view = _view(policy)

    async def outlast_middleware(
        request: aiohttp.ClientRequest, handler: Handler
    ) -> aiohttp.ClientResponse:
        attempts = _Attempts(handler, request)
        bound = view.for_key(origin_of(request.url))
        token = _HELD.set(attempts)
        try:
            response = await bound.acall(attempts)
        except _PolicyCircuitOpen as exc:
            raise CircuitOpenError(exc.name, exc.retry_after) from exc
        except BaseException:
            attempts.release()
            raise
        finally:
            _HELD.reset(token)
        if response is attempts.freed:  # released for a retry the breaker then refused
            raise CircuitOpenError(bound.key, bound.retry_after())
        return response

    _OURS.add(outlast_middleware)
    return outlast_middleware


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

        async def _request(
            self, method: str, str_or_url: Any, **kwargs: Any
        ) -> aiohttp.ClientResponse:
            given = kwargs.get("middlewares")
            if given is not None:
                kwargs["middlewares"] = _keeping_ours(given, self._middlewares)
            return await super()._request(method, str_or_url, **kwargs)


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
    connector = aiohttp.TCPConnector(resolver=chosen, use_dns_cache=False, **options)
    middlewares = (*kwargs.pop("middlewares", ()), middleware(policy))
    return _Session(connector=connector, middlewares=middlewares, **kwargs)
