"""``outlast.Client`` and ``outlast.AsyncClient``: httpx clients whose transports are outlast's.

They are ``httpx.Client`` / ``httpx.AsyncClient`` themselves: httpx picks proxies from
``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` exactly as it always
does, and asks the client for a transport per proxy and one for direct connections.
These subclasses answer with outlast transports, so every mount (proxied or not) shares
one resolver and one policy. Handing httpx ``transport=`` yourself keeps httpx's rule:
that transport is used and environment proxies are not.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import httpx

from outlast import _root
from outlast._dial import DEFAULT_EJECT_FOR
from outlast._events import Listener
from outlast._exceptions import ConfigError
from outlast.dns import Resolver
from outlast.http._pool import DEFAULT_LIMITS
from outlast.http._transport import AsyncTransport, Transport, disabled, http_policy
from outlast.policy import Policy

__all__ = ["AsyncClient", "Client"]

TransportT = TypeVar("TransportT")


class _Shared:
    """The resolver and policy every transport of one client uses, found on first need.

    A client handed ``transport=`` (and no proxy) never asks. One given none uses the
    process's shared ones (:mod:`outlast._root`), which no client closes.
    """

    __slots__ = ("disabled", "eject_for", "listeners", "policy", "resolver")

    def __init__(
        self,
        resolver: Resolver | None,
        policy: Policy | None,
        eject_for: float,
        listeners: Iterable[Listener],
    ) -> None:
        if resolver is not None and not isinstance(resolver, Resolver):
            raise ConfigError("resolver", resolver, "an outlast.Resolver or None")
        if policy is not None and not isinstance(policy, Policy):
            raise ConfigError("policy", policy, "an outlast.Policy or None")
        self.listeners = tuple(listeners)
        self.eject_for = eject_for
        self.disabled = disabled()
        self.resolver = resolver
        self.policy = policy

    def options(self) -> dict[str, Any]:
        if not self.disabled:
            if self.policy is None:
                self.policy = http_policy(self.listeners)
            if self.resolver is None:  # the process's, shared: never closed by the client
                self.resolver = _root.shared_resolver(listeners=self.listeners)
        return {
            "resolver": self.resolver,
            "policy": self.policy,
            "eject_for": self.eject_for,
            "listeners": self.listeners,
        }


class _Face(Generic[TransportT]):
    """What :class:`Client` and :class:`AsyncClient` share, written once.

    outlast's arguments, kept in a :class:`_Shared`, and httpx's two transport hooks,
    answered with the face's own transport class (``_transport_class``).
    """

    _transport_class: Callable[..., TransportT]

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        policy: Policy | None = None,
        eject_for: float = DEFAULT_EJECT_FOR,
        listeners: Iterable[Listener] = (),
        **kwargs: Any,
    ) -> None:
        self._outlast = _Shared(resolver, policy, eject_for, listeners)
        super().__init__(**kwargs)

    @property
    def resolver(self) -> Resolver | None:
        """The resolver this client's transports share: ``client.resolver.snapshot()``.

        That of the transport handed as ``transport=``, if it is outlast's; None when
        outlast is disabled. Added in 0.1.0.
        """
        resolver = self._outlast.resolver
        if resolver is None:
            resolver = getattr(getattr(self, "_transport", None), "resolver", None)
        return resolver if isinstance(resolver, Resolver) else None

    @property
    def policy(self) -> Policy | None:
        """The policy this client's requests go through: ``client.policy.snapshot()``.

        One breaker and budget per origin (``policy.for_key(origin)``); None when outlast
        is disabled. Added in 0.1.0.
        """
        policy = self._outlast.policy
        if policy is None:
            policy = getattr(getattr(self, "_transport", None), "policy", None)
        return policy if isinstance(policy, Policy) else None

    def _init_transport(
        self,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        transport: TransportT | None = None,
    ) -> TransportT:
        if transport is not None:
            return transport
        return self._init_proxy_transport(
            None, verify, cert, trust_env=trust_env, http1=http1, http2=http2, limits=limits
        )

    def _init_proxy_transport(
        self,
        proxy: httpx.Proxy | None,  # None: the direct transport (see _init_transport)
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> TransportT:
        return self._transport_class(
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            limits=limits,
            proxy=proxy,
            **self._outlast.options(),
        )


class Client(_Face[httpx.BaseTransport], httpx.Client):
    """An ``httpx.Client`` whose transports (direct and per proxy) are :class:`outlast.Transport`.

    Takes ``httpx.Client``'s arguments (verify, cert, http2, limits, proxy, trust_env,
    mounts, timeout, ...) plus ``resolver``, ``policy``, ``eject_for`` and ``listeners``
    (see :class:`outlast.Transport`), shared by all its transports. Proxies from the
    environment are honoured as by httpx.

    Added in 0.1.0.
    """

    _transport_class = Transport


class AsyncClient(_Face[httpx.AsyncBaseTransport], httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose transports are :class:`outlast.AsyncTransport`.

    Arguments as :class:`Client`.

    Added in 0.1.0.
    """

    _transport_class = AsyncTransport
