"""``outlast.requests.HTTPAdapter``, ``Session`` and ``mount``: requests through outlast.

An outlast adapter is requests' ``HTTPAdapter`` with two changes. Its pool manager (and
each HTTP proxy manager) builds pools whose connections dial outlast-resolved
addresses (:mod:`outlast.requests._connection`); and :meth:`HTTPAdapter.send` runs each
request through an :class:`outlast.Policy` bound to the request's origin
(``scheme://host:port``: one breaker and one retry budget per origin), judged by
:mod:`outlast.requests._classify`. A response that is retried is closed before the
policy waits, so no pooled connection is held through the backoff.

The caller's ``timeout`` (``t`` or ``(connect, read)``) is a deadline for the whole call,
connect + read, as in ``outlast.http``: each attempt's timeouts are cut to what remains.

Retries are made in one layer. urllib3's own are off in an outlast adapter
(``Retry(0, read=False)``, requests' default); a ``max_retries`` the user configured
(an ``int`` or a ``urllib3.Retry``, on the adapter or on an adapter that
:func:`mount` instruments) caps outlast's attempts at that many retries plus one, the
rule ``outlast.aws`` applies to botocore's ``total_max_attempts``. Nothing multiplies.

:func:`mount` instruments a session's adapters *in place* (their class becomes an
outlast subclass of their own class, their settings kept), so a subclass such as
google-auth's mutual-TLS adapter keeps its client certificate. google-auth's
``AuthorizedSession`` refreshes tokens through a second session
(``_auth_request_session``); :func:`mount` instruments that one too.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast
from urllib.parse import urlsplit

import requests
import requests.adapters
from urllib3.util.retry import Retry as Urllib3Retry

from outlast import _root
from outlast._config import Settings
from outlast._dial import DEFAULT_EJECT_FOR, Outliers
from outlast._events import Emitter, Listener
from outlast._exceptions import CircuitOpenError as _PolicyCircuitOpen
from outlast._exceptions import ConfigError
from outlast.dns import Resolver
from outlast.policy import Classifier, Decision, Outcome, Policy, retry_all
from outlast.requests._classify import classify_error, classify_result, never_sent, retry_safe
from outlast.requests._connection import Dialer, pool_classes
from outlast.requests._errors import CircuitOpenError
from outlast.requests._events import LOGGER

__all__ = ["POLICY_NAME", "HTTPAdapter", "Session", "mount"]

POLICY_NAME: Final = "outlast.requests"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_NO_RETRIES: Final = Urllib3Retry(0, read=False)  # requests' DEFAULT_RETRIES, made explicit
_SESSION_ATTRIBUTES: Final = frozenset(
    {"headers", "auth", "proxies", "hooks", "params", "stream", "verify", "cert"}
    | {"max_redirects", "trust_env", "cookies"}
)


# -- defaults ------------------------------------------------------------------------


def _defaults() -> tuple[Resolver, Policy]:
    """The process's shared resolver and the shared ``outlast.requests`` policy.

    One per ``OUTLAST_*`` configuration, built by the composition root (:mod:`outlast._root`).
    """
    resolver = _root.shared_resolver()
    policy = _root.shared_policy(
        POLICY_NAME, classify_error=classify_error, classify_result=classify_result
    )
    return resolver, policy


def _disabled() -> bool:
    return Settings.from_env().disable


@functools.lru_cache(maxsize=1024)
def origin_of(url: str) -> str:
    """The key of a URL's breaker and budget: ``scheme://host:port`` (cached: hot path)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


# -- the retry rule ------------------------------------------------------------------


def attempts_cap(max_retries: object) -> int | None:
    """The attempts a user's ``max_retries`` allows (retries plus one); None: no cap.

    An ``int`` ``n`` allows ``n + 1``; a ``urllib3.Retry`` its ``total + 1`` (``total=False``
    or ``0``: one attempt), or, with ``total=None``, one more than the largest of its
    ``connect``, ``read``, ``status`` and ``other`` counts that is set. None: no cap.
    """
    if max_retries is None:
        return None
    if isinstance(max_retries, bool) or not isinstance(max_retries, (int, Urllib3Retry)):
        raise ConfigError("max_retries", max_retries, "None, a whole number or a urllib3.Retry")
    if isinstance(max_retries, int):
        if max_retries < 0:
            raise ConfigError("max_retries", max_retries, "a whole number of 0 or more")
        return max_retries + 1
    total = max_retries.total
    if total is False:
        return 1
    if isinstance(total, int):
        return max(0, total) + 1
    counts = [
        c
        for c in (max_retries.connect, max_retries.read, max_retries.status, max_retries.other)
        if isinstance(c, int) and not isinstance(c, bool)
    ]
    return max(counts) + 1 if counts else None


def _capped(classify: Classifier, cap: int | None) -> Classifier:
    if cap is None:
        return classify

    def classify_capped(outcome: Outcome, /) -> Decision:
        decision = classify(outcome)
        if decision.retry and outcome.attempt >= cap:
            return dataclasses.replace(decision, retry=False)
        return decision

    return classify_capped


# -- one request's attempts ----------------------------------------------------------


class _Attempts:
    """One request's attempts: sends it, remembers the response, frees it before a retry."""

    __slots__ = ("freed", "last", "request", "send_once")

    def __init__(self, send_once: Callable[[], requests.Response], request: Any) -> None:
        self.send_once = send_once
        self.request = request
        self.last: requests.Response | None = None
        #: The last response closed for a retry: the policy may still hand it back.
        self.freed: requests.Response | None = None

    def release(self) -> None:
        last = self.last
        if last is not None:
            last.close()
            self.freed, self.last = last, None

    def __call__(self) -> requests.Response:
        self.release()
        response = self.send_once()
        self.last = response
        return response


_HELD: Final[contextvars.ContextVar[_Attempts | None]] = contextvars.ContextVar(
    "outlast.requests.held", default=None
)


def _releasing(sleep: Callable[[float], None]) -> Callable[[float], None]:
    def release_then_sleep(seconds: float) -> None:
        held = _HELD.get()
        if held is not None:
            held.release()
        sleep(seconds)

    return release_then_sleep


def _vetoed(classify: Classifier) -> Classifier:
    """``classify``, never retrying a request the server may have seen unless it is safe."""

    def classify_vetoed(outcome: Outcome, /) -> Decision:
        error = outcome.error
        if isinstance(error, requests.exceptions.ProxyError):
            return Decision.NEUTRAL  # the proxy's answer, not the target's health
        if getattr(error, "outlast_unsent", False):
            return Decision.NEUTRAL  # a retry cut at the deadline (_unsent): never sent
        decision = classify(outcome)
        if not decision.retry or never_sent(error):
            return decision
        carrier = error if error is not None else outcome.result
        if retry_safe(getattr(carrier, "request", None)):
            return decision
        return dataclasses.replace(decision, retry=False)

    return classify_vetoed


def _view(policy: Policy, cap: int | None) -> Policy:
    """``policy`` with requests' classifiers where it has the defaults, the HTTP rules
    on top, the attempts cap, and a sleep that frees the retried response first."""
    error = classify_error if policy.classify_error is retry_all else policy.classify_error
    result = classify_result if policy.classify_result is None else policy.classify_result
    sleep, _ = policy.sleeps
    return policy.derive(
        classify_error=_capped(_vetoed(error), cap),
        classify_result=_capped(_vetoed(result), cap),
        sleep=_releasing(sleep),
    )


# -- the caller's timeout as a deadline ------------------------------------------------

#: The shortest timeout an attempt is given when its deadline has (nearly) passed.
_LEAST_TIMEOUT: Final = 0.001


def _phases(timeout: Any) -> tuple[float | None, float | None] | None:
    """requests' ``timeout`` as ``(connect, read)`` seconds; None for a form not read here
    (such as a ``urllib3.Timeout``), which is passed on untouched."""
    if timeout is None:
        return (None, None)
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return (float(timeout), float(timeout))
    if isinstance(timeout, tuple) and len(timeout) == 2:
        connect, read = timeout
        if all(
            value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
            for value in (connect, read)
        ):
            return (
                None if connect is None else float(connect),
                None if read is None else float(read),
            )
    return None


def _limit(phases: tuple[float | None, float | None] | None, view: Policy) -> float | None:
    """The seconds a whole call may take: connect + read of the caller's timeout, or less.

    ``Retry.deadline`` (``OUTLAST_RETRY_DEADLINE``) applies too, the tighter winning;
    None when neither bounds the call. The rule of ``outlast.http``.
    """
    limit: float | None = None
    if phases is not None and phases[0] is not None and phases[1] is not None:
        limit = phases[0] + phases[1]
    retry = view.retry
    if retry is not None and retry.deadline is not None:
        limit = retry.deadline if limit is None else min(limit, retry.deadline)
    return limit if limit is not None and limit > 0 else None


def _unsent(request: requests.PreparedRequest) -> requests.exceptions.Timeout:
    """The error for a retry not sent because the call's deadline passed during its
    backoff (a busy thread): ``requests.Timeout``, marked ``outlast_unsent`` so that
    :func:`outlast.requests.classify_error` holds it neutral (nothing reached the
    destination)."""
    error = requests.exceptions.Timeout(
        f"Timeout: the call's deadline passed before a retry of {request.url} was sent",
        request=request,
    )
    error.outlast_unsent = True  # type: ignore[attr-defined]
    return error


def _cut(phases: tuple[float | None, float | None], deadline: float) -> tuple[float, float]:
    """One attempt's ``(connect, read)``: the caller's, cut to what remains of the call."""
    remaining = max(_LEAST_TIMEOUT, deadline - time.monotonic())
    connect, read = phases
    return (
        remaining if connect is None else min(connect, remaining),
        remaining if read is None else min(read, remaining),
    )


# -- the adapter ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Parts:
    dialer: Dialer | None
    view: Policy | None
    policy: Policy | None
    classes: dict[str, type[Any]] | None


def _parts(
    resolver: Resolver | None,
    policy: Policy | None,
    eject_for: float,
    listeners: Iterable[Listener],
    cap: int | None,
) -> _Parts:
    if resolver is not None and not isinstance(resolver, Resolver):
        raise ConfigError("resolver", resolver, "an outlast.Resolver or None")
    if policy is not None and not isinstance(policy, Policy):
        raise ConfigError("policy", policy, "an outlast.Policy or None")
    outliers = Outliers(eject_for=eject_for)  # validates eject_for even when disabled
    if _disabled():
        return _Parts(None, None, None, None)
    if resolver is None or policy is None:
        shared_resolver, shared_policy = _defaults()
        resolver = resolver if resolver is not None else shared_resolver
        policy = policy if policy is not None else shared_policy
    dialer = Dialer(resolver, outliers, Emitter(LOGGER, tuple(listeners)))
    return _Parts(dialer, _view(policy, cap), policy, pool_classes(dialer))


def _circuit_open(exc: _PolicyCircuitOpen, request: Any) -> CircuitOpenError:
    return CircuitOpenError(exc.name, exc.retry_after, request=request)


class _Outlast(requests.adapters.HTTPAdapter):
    """What an outlast adapter adds to an ``HTTPAdapter`` (or a subclass of one)."""

    _outlast: _Parts

    def _outlast_install(self, parts: _Parts) -> None:
        self._outlast = parts
        if parts.classes is None:
            return
        self.max_retries = _NO_RETRIES
        managers = [getattr(self, "poolmanager", None), *self.proxy_manager.values()]
        for manager in managers:
            if manager is not None and _dials_directly(manager):
                manager.clear()  # idle connections were dialled without outlast
                manager.pool_classes_by_scheme = parts.classes

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        parts = getattr(self, "_outlast", None)
        if parts is not None and parts.classes is not None:
            self.poolmanager.pool_classes_by_scheme = parts.classes

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        parts = getattr(self, "_outlast", None)
        if parts is not None and parts.classes is not None and _dials_directly(manager):
            manager.pool_classes_by_scheme = parts.classes
        return manager

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            f"cannot pickle {type(self).__name__}: its resolver and policy belong to this "
            "process; build a new outlast adapter (or call outlast.requests.mount) there"
        )

    @property
    def resolver(self) -> Resolver | None:
        """The resolver connections go through (None when outlast is disabled)."""
        dialer = self._outlast.dialer
        return None if dialer is None else dialer.resolver

    @property
    def policy(self) -> Policy | None:
        """The policy requests go through (None when outlast is disabled)."""
        return self._outlast.policy

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request`` under the origin's policy; requests' own arguments and errors."""
        view = self._outlast.view
        send = super().send
        if view is None:
            return send(request, stream, timeout, verify, cert, dict(proxies or {}))

        policy = view.for_key(origin_of(request.url or ""))
        phases = _phases(timeout)
        limit = _limit(phases, policy)
        deadline = None if limit is None else time.monotonic() + limit
        if limit is not None:  # the caller's timeout bounds the whole call
            policy = policy.within(limit)

        sent = False

        def once() -> requests.Response:
            nonlocal sent
            if sent and deadline is not None and deadline <= time.monotonic():
                raise _unsent(request)  # the backoff overran the deadline: a retry, cut
            sent = True
            cut = deadline is not None and phases is not None
            bound = _cut(phases, deadline) if cut else timeout  # type: ignore[arg-type]
            return send(request, stream, bound, verify, cert, dict(proxies or {}))

        attempts = _Attempts(once, request)
        token = _HELD.set(attempts)
        try:
            response = policy.call(attempts)
        except _PolicyCircuitOpen as exc:
            raise _circuit_open(exc, request) from exc
        except BaseException:  # failed, or interrupted during the backoff: free the connection
            attempts.release()
            raise
        finally:
            _HELD.reset(token)
        if response is attempts.freed:  # closed for a retry the breaker then refused
            raise CircuitOpenError(policy.key, policy.retry_after(), request=request)
        return response


def _dials_directly(manager: Any) -> bool:
    """A pool or HTTP proxy manager (a SOCKS proxy manager dials through the proxy)."""
    return not type(manager).__name__.startswith("SOCKS")


class HTTPAdapter(_Outlast):
    """``requests.adapters.HTTPAdapter`` that resolves with outlast, fails over, applies a policy.

    Takes ``HTTPAdapter``'s arguments, plus: ``resolver`` (default: the process's shared
    resolver, built from ``OUTLAST_DNS_*``; a resolver given is not closed by the
    adapter), ``policy`` (default: the shared ``outlast.requests`` policy from
    ``OUTLAST_*``; one breaker and budget per origin), ``eject_for`` (seconds an address
    that refused or timed out is tried last) and ``listeners`` (receive the adapter's
    address events). ``max_retries`` (None, an ``int`` or a ``urllib3.Retry``) caps
    outlast's attempts at that many retries plus one; urllib3 itself never retries.
    With ``OUTLAST_DISABLE=1`` it is requests' plain adapter. Raises
    :class:`outlast.ConfigError` for a bad argument.

    Added in 0.1.0.
    """

    def __init__(
        self,
        pool_connections: int = requests.adapters.DEFAULT_POOLSIZE,
        pool_maxsize: int = requests.adapters.DEFAULT_POOLSIZE,
        max_retries: int | Urllib3Retry | None = None,
        pool_block: bool = requests.adapters.DEFAULT_POOLBLOCK,
        *,
        resolver: Resolver | None = None,
        policy: Policy | None = None,
        eject_for: float = DEFAULT_EJECT_FOR,
        listeners: Iterable[Listener] = (),
    ) -> None:
        cap = attempts_cap(max_retries)
        self._outlast = _parts(resolver, policy, eject_for, listeners, cap)
        super().__init__(pool_connections, pool_maxsize, 0, pool_block)
        if max_retries is not None and self._outlast.view is None:
            self.max_retries = Urllib3Retry.from_int(max_retries)  # disabled: urllib3 retries
        else:
            self.max_retries = _NO_RETRIES


_CLASSES: dict[type[Any], type[_Outlast]] = {requests.adapters.HTTPAdapter: HTTPAdapter}
_CLASSES_LOCK = threading.Lock()


def _outlast_class(cls: type[Any]) -> type[_Outlast]:
    """The outlast subclass of an adapter class (one per class).

    Its bases are :class:`HTTPAdapter` (so ``isinstance(adapter, HTTPAdapter)`` tells an
    instrumented adapter) and ``cls``: the method order is outlast's, then ``cls``'s,
    then requests'. ``HTTPAdapter.__init__`` never runs on an instrumented adapter.
    """
    with _CLASSES_LOCK:
        made = _CLASSES.get(cls)
        if made is None:
            made = type(f"Outlast{cls.__name__.lstrip('_')}", (HTTPAdapter, cls), {})
            _CLASSES[cls] = made
        return made


def _left_default(retry: Any) -> bool:
    """Whether an adapter's ``max_retries`` is requests' default (``Retry(0, read=False)``).

    requests turns ``max_retries=0`` into that value, so a session nobody configured
    does not cap outlast's attempts at one.
    """
    if not isinstance(retry, Urllib3Retry):
        return False
    defaults = Urllib3Retry(0, read=False)
    fields = ("total", "connect", "read", "redirect", "status", "other", "status_forcelist")
    return all(getattr(retry, f) == getattr(defaults, f) for f in fields)


def _instrument(adapter: Any, options: dict[str, Any]) -> None:
    if isinstance(adapter, _Outlast) or not isinstance(adapter, requests.adapters.HTTPAdapter):
        return
    cap = attempts_cap(None if _left_default(adapter.max_retries) else adapter.max_retries)
    parts = _parts(cap=cap, **options)
    if parts.classes is None:
        return  # OUTLAST_DISABLE: the session stays as it is
    adapter.__class__ = _outlast_class(type(adapter))
    instrumented: _Outlast = cast(_Outlast, adapter)
    instrumented._outlast_install(parts)


def mount(
    session: requests.Session,
    *,
    resolver: Resolver | None = None,
    policy: Policy | None = None,
    eject_for: float = DEFAULT_EJECT_FOR,
    listeners: Iterable[Listener] = (),
) -> requests.Session:
    """Make an existing ``requests.Session`` go through outlast, in place; returns it.

    Every ``HTTPAdapter`` mounted on the session (requests' own, or a subclass such as
    google-auth's mutual-TLS adapter) is instrumented in place: its class becomes an
    outlast subclass of its class, its pools dial outlast-resolved addresses, its
    requests go through the policy, and a ``max_retries`` it had caps outlast's attempts
    (its urllib3 retries are turned off). Adapters of other kinds are left alone. When
    the session is google-auth's ``AuthorizedSession``, the session it refreshes tokens
    through is instrumented too. An adapter mounted *after* this call (for example by
    ``AuthorizedSession.configure_mtls_channel()``) is not: call :func:`mount` again.
    Idempotent. The options are :class:`HTTPAdapter`'s. Raises
    :class:`outlast.ConfigError` when ``session`` is not a ``requests.Session``.

    Added in 0.1.0.
    """
    if not isinstance(session, requests.Session):
        raise ConfigError("session", session, "a requests.Session (or a subclass of one)")
    options: dict[str, Any] = {
        "resolver": resolver,
        "policy": policy,
        "eject_for": eject_for,
        "listeners": tuple(listeners),
    }
    sessions = [session]
    refresh = getattr(session, "_auth_request_session", None)  # google-auth AuthorizedSession
    if isinstance(refresh, requests.Session) and refresh is not session:
        sessions.append(refresh)
    for each in sessions:
        for adapter in list(each.adapters.values()):
            _instrument(adapter, options)
    return session


class Session(requests.Session):
    """A ``requests.Session`` whose ``http://`` and ``https://`` adapters are outlast's.

    Keyword arguments: :class:`HTTPAdapter`'s (``resolver``, ``policy``, ``eject_for``,
    ``listeners``, ``max_retries``, ``pool_connections``, ``pool_maxsize``,
    ``pool_block``), and any of the session's own attributes (``verify``, ``cert``,
    ``proxies``, ``trust_env``, ``headers``, ``auth``, ``params``, ``stream``,
    ``max_redirects``, ``hooks``, ``cookies``), set after construction. Unlike
    requests, a ``verify`` set on the session is not replaced by ``REQUESTS_CA_BUNDLE``
    or ``CURL_CA_BUNDLE`` (they still apply when ``verify`` is ``True``). Raises
    :class:`outlast.ConfigError` for an unknown keyword.

    Added in 0.1.0.
    """

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        policy: Policy | None = None,
        eject_for: float = DEFAULT_EJECT_FOR,
        listeners: Iterable[Listener] = (),
        max_retries: int | Urllib3Retry | None = None,
        pool_connections: int = requests.adapters.DEFAULT_POOLSIZE,
        pool_maxsize: int = requests.adapters.DEFAULT_POOLSIZE,
        pool_block: bool = requests.adapters.DEFAULT_POOLBLOCK,
        **attributes: Any,
    ) -> None:
        unknown = sorted(set(attributes) - _SESSION_ATTRIBUTES)
        if unknown:
            raise ConfigError(
                unknown[0],
                attributes[unknown[0]],
                "an HTTPAdapter option or a requests.Session attribute "
                f"({', '.join(sorted(_SESSION_ATTRIBUTES))})",
            )
        super().__init__()
        for default in self.adapters.values():
            default.close()  # requests' own, replaced below
        for name, value in attributes.items():
            setattr(self, name, value)
        adapter = HTTPAdapter(
            pool_connections,
            pool_maxsize,
            max_retries,
            pool_block,
            resolver=resolver,
            policy=policy,
            eject_for=eject_for,
            listeners=listeners,
        )
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def merge_environment_settings(
        self,
        url: str,
        proxies: Any,
        stream: Any,
        verify: Any,
        cert: Any,
    ) -> Any:
        """requests' merge, except that a ``verify`` set on the session beats the environment.

        requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` replace a
        ``session.verify`` that is not ``True`` (requests issue 3829); here a request
        that does not say ``verify=`` uses the session's. ``verify=`` on the request,
        proxies and ``NO_PROXY`` merge as requests merges them.
        """
        if verify is None and self.verify is not True:
            verify = self.verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)
