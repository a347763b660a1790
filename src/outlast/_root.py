"""The composition root: outlast's components built from settings, wired, shared, owned.

This is the one place that knows every layer. It

- plugs the optional layers into the core's seams: a :class:`~outlast.Resolver` or
  :class:`~outlast.Policy` built from the environment gets the fleet's shared answers and
  breakers (``OUTLAST_REDIS_URL``) and the resolver chaos's provider wrappers
  (``OUTLAST_CHAOS``); ``outlast.dns`` and ``outlast.policy`` import neither;
- shares what the integrations build for users who gave them nothing: one resolver, and
  one policy per name and rules, per process and per ``OUTLAST_*`` configuration, for as
  long as some client uses them (:func:`shared_resolver`, :func:`shared_policy`). A
  process keeps one cache, one cache-file writer and one loop thread however many
  clients it makes; a resolver (thread, sockets) is freed with the last client holding
  it, a policy (plain state) lives for the process so its breakers outlive a client.
  A component a user constructs (``Resolver.from_env()``, ``Policy(...)``) is theirs;
- builds the chaos injectors an integration hosts (:func:`http_chaos`,
  :func:`urllib3_chaos`, :func:`aiobotocore_chaos`): integrations never import
  ``outlast.chaos`` or ``outlast.fleet`` themselves.

Layers: imports ``outlast._config``, ``outlast.dns``, ``outlast.policy``; ``outlast.fleet``
and ``outlast.chaos`` only when configured. The integrations (``http``, ``aws``,
``requests``, ``aiohttp``) import it; nothing below does.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from outlast._config import VARIABLES, Settings
from outlast._events import Listener
from outlast.dns import Resolver
from outlast.dns import _resolver as _dns_seam
from outlast.policy import CircuitBreaker, Policy, Retry, RetryBudget
from outlast.policy import _policy as _policy_seam
from outlast.policy._breaker import SharedBreakers
from outlast.policy._classify import Classifier

if TYPE_CHECKING:
    from outlast.chaos._aiobotocore import AioInjector
    from outlast.chaos._http import Injector
    from outlast.chaos._urllib3 import Injector as Urllib3Injector

__all__ = [
    "EnvKey",
    "build_policy",
    "forget_shared",
    "environ_key",
    "aiobotocore_chaos",
    "http_chaos",
    "urllib3_chaos",
    "outlast_environ",
    "shared_policy",
    "shared_resolver",
]

EnvKey = tuple[tuple[str, str], ...]
_NAMES: Final = frozenset(var.name for var in VARIABLES)
T = TypeVar("T")


def outlast_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``OUTLAST_*`` variables of ``environ`` (``os.environ`` by default) that outlast reads."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in _NAMES if name in env}


def environ_key(environ: Mapping[str, str] | None = None) -> EnvKey:
    """A hashable key for one ``OUTLAST_*`` configuration."""
    return tuple(sorted(outlast_environ(environ).items()))


# -- the seams: fleet and chaos plugged into the core ----------------------------------


def _fleet(settings: Settings, listeners: Iterable[Listener]) -> Any:
    from outlast.fleet import connect  # imported only in fleet mode (needs outlast[redis])

    assert settings.redis_url is not None
    return connect(settings.redis_url, listeners=listeners)


def _assemble_resolver(
    settings: Settings, options: dict[str, object], overrides: Mapping[str, object]
) -> None:
    listeners: Iterable[Listener] = overrides.get("listeners", ())  # type: ignore[assignment]
    if settings.redis_url is not None and "shared" not in overrides:
        options["shared"] = _fleet(settings, listeners)
    if settings.chaos is not None:  # OUTLAST_CHAOS: a rehearsal
        from outlast.chaos._dns import wrap_dns

        options["providers"] = wrap_dns(settings.chaos, options)


def _assemble_policy(settings: Settings, listeners: Iterable[Listener]) -> SharedBreakers | None:
    if settings.redis_url is None:
        return None
    shared: SharedBreakers = _fleet(settings, listeners)
    return shared


_dns_seam.plug(_assemble_resolver)
_policy_seam.plug(_assemble_policy)


# -- shared per process and configuration ----------------------------------------------


class _Shared:
    """Components keyed by configuration.

    With ``weak``, an entry lives while some client holds it (a resolver has a thread and
    sockets: the last client to go frees them); otherwise for the process (a policy is
    plain state: its breakers outlive a client made per call). Entries of an earlier
    ``OUTLAST_*`` configuration are forgotten, not closed: their clients may still use
    them.
    """

    def __init__(self, *, weak: bool) -> None:
        self._lock = threading.Lock()
        self._env: EnvKey | None = None
        self._weak = weak
        self._items: MutableMapping[Hashable, Any] = self._new()

    def _new(self) -> MutableMapping[Hashable, Any]:
        return weakref.WeakValueDictionary() if self._weak else {}

    def get(
        self, env: EnvKey, key: Hashable, build: Callable[[], T], usable: Callable[[T], bool]
    ) -> T:
        with self._lock:
            if env != self._env:
                self._items = self._new()
                self._env = env
            item: T | None = self._items.get(key)
            if item is None or not usable(item):
                item = build()
                self._items[key] = item
            return item

    def clear(self) -> None:
        with self._lock:
            self._items = self._new()
            self._env = None


_RESOLVERS = _Shared(weak=True)
_POLICIES = _Shared(weak=False)


def shared_resolver(
    environ: Mapping[str, str] | None = None, *, listeners: Iterable[Listener] = ()
) -> Resolver:
    """The process's resolver for this ``OUTLAST_*`` configuration (and these listeners).

    Built with :meth:`Resolver.from_env` on first use and shared by every client that
    was given no resolver, while one of them holds it. Clients never close it; it is
    closed (its cache file written) at interpreter exit, or its thread stopped when the
    last client holding it is collected. Raises :class:`~outlast.ConfigError` for a bad variable.
    """
    env = environ_key(environ)
    listeners = tuple(listeners)
    return _RESOLVERS.get(
        env,
        listeners,
        lambda: Resolver.from_env(dict(env), listeners=listeners),
        lambda resolver: not resolver.closed,
    )


def build_policy(
    settings: Settings,
    *,
    classify_error: Classifier,
    classify_result: Classifier | None,
    name: str,
    listeners: Iterable[Listener] = (),
    max_attempts: int | None = None,
) -> Policy:
    """A policy from ``settings``, its breakers shared through the fleet when configured.

    ``max_attempts`` caps ``OUTLAST_RETRY_ATTEMPTS`` (a limit the caller's SDK was given
    explicitly, such as botocore's ``total_max_attempts``).
    """
    retry = Retry.from_settings(settings)
    if max_attempts is not None and max_attempts < retry.attempts:
        retry = Retry(
            attempts=max(1, max_attempts), base=retry.base, cap=retry.cap, deadline=retry.deadline
        )
    listeners = tuple(listeners)
    return Policy(
        retry=retry,
        budget=RetryBudget.from_settings(settings),
        breaker=CircuitBreaker.from_settings(settings),
        classify_error=classify_error,
        classify_result=classify_result,
        listeners=listeners,
        name=name,
        enabled=not settings.disable,
        shared=None if settings.disable else _assemble_policy(settings, listeners),
    )


def shared_policy(
    name: str,
    *,
    classify_error: Classifier,
    classify_result: Classifier | None,
    environ: Mapping[str, str] | None = None,
    listeners: Iterable[Listener] = (),
    max_attempts: int | None = None,
) -> Policy:
    """The process's policy called ``name`` with these classifiers, for this configuration.

    Built with :func:`build_policy` on first use and shared by every client of that
    integration that was given no policy, so one origin has one breaker and one budget
    in the process however many clients reach it. Raises :class:`~outlast.ConfigError`
    for a bad variable.
    """
    env = environ_key(environ)
    listeners = tuple(listeners)

    def make() -> Policy:
        return build_policy(
            Settings.from_env(dict(env)),
            classify_error=classify_error,
            classify_result=classify_result,
            name=name,
            listeners=listeners,
            max_attempts=max_attempts,
        )

    key = (name, classify_error, classify_result, listeners, max_attempts)
    return _POLICIES.get(env, key, make, lambda _: True)


def forget_shared() -> None:
    """Forget the shared components (tests; a reconfigured process). Does not close them."""
    _RESOLVERS.clear()
    _POLICIES.clear()


# -- chaos for the integrations --------------------------------------------------------


def http_chaos(settings: Settings, listeners: Iterable[Listener] = ()) -> Injector | None:
    """The httpx transports' connect and HTTP fault injector, or None when chaos is off."""
    if settings.chaos is None or settings.disable:
        return None
    from outlast.chaos._http import Injector  # imported only for a rehearsal

    return Injector(settings.chaos, listeners)


def urllib3_chaos(settings: Settings, listeners: Iterable[Listener] = ()) -> Urllib3Injector | None:
    """Connect and HTTP faults under botocore's urllib3 (``outlast.aws``), or None."""
    if settings.chaos is None or settings.disable:
        return None
    from outlast.chaos._urllib3 import urllib3_chaos as build  # only for a rehearsal

    return build(settings, listeners)


def aiobotocore_chaos(settings: Settings, listeners: Iterable[Listener] = ()) -> AioInjector | None:
    """Connect and HTTP faults around an aiobotocore client's aiohttp session, or None."""
    if settings.chaos is None or settings.disable:
        return None
    from outlast.chaos._aiobotocore import aiobotocore_chaos as build  # only for a rehearsal

    return build(settings, listeners)
