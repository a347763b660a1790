"""The httpcore pool behind a transport: httpx's own construction, with our network backend.

``httpx.HTTPTransport.__init__`` builds a ``ConnectionPool``, an ``HTTPProxy`` or a
``SOCKSProxy`` from its arguments; :func:`build_pool` builds the same ones, with the
same arguments, and adds ``network_backend=``. A direct pool dialling through an outlast
backend is :class:`~outlast.http._connection.DialledPool` (TLS inside the address race,
connections retired when their address leaves the name). The sync and async faces differ
only in the classes, named once each in :data:`SYNC_POOLS` and :data:`ASYNC_POOLS`.
With ``backend=None`` the pool is exactly httpx's (that is what ``OUTLAST_DISABLE=1``
gives).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ssl
from collections.abc import Callable, Iterable
from typing import Any, Final, Generic, TypeVar

import httpcore
import httpx

from outlast.http._connection import AsyncDialledPool, DialledPool

__all__ = ["ASYNC_POOLS", "DEFAULT_LIMITS", "SYNC_POOLS", "Pools", "build_pool", "proxy_of"]

#: httpx's default limits (``httpx._config.DEFAULT_LIMITS``).
DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)

ProxyArg = httpx.URL | str | httpx.Proxy
PoolT = TypeVar("PoolT")
BackendT = TypeVar("BackendT")


def proxy_of(proxy: ProxyArg | None) -> httpx.Proxy | None:
    """``proxy`` as an ``httpx.Proxy`` (httpx accepts a URL or a string too)."""
    return httpx.Proxy(url=proxy) if isinstance(proxy, (str, httpx.URL)) else proxy


def _proxy_url(proxy: httpx.Proxy) -> httpcore.URL:
    return httpcore.URL(
        scheme=proxy.url.raw_scheme,
        host=proxy.url.raw_host,
        port=proxy.url.port,
        target=proxy.url.raw_path,
    )


def _require_socksio() -> None:
    if importlib.util.find_spec("socksio") is None:
        raise ImportError(
            "Using SOCKS proxy, but the 'socksio' package is not installed. "
            "Make sure to install httpx using `pip install httpx[socks]`."
        )


def _common(ssl_context: ssl.SSLContext, limits: httpx.Limits, http1: bool, http2: bool) -> Any:
    return {
        "ssl_context": ssl_context,
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "http1": http1,
        "http2": http2,
    }


def _bad_scheme(proxy: httpx.Proxy) -> ValueError:
    return ValueError(
        "Proxy protocol must be either 'http', 'https', 'socks5', or 'socks5h',"
        f" but got {proxy.url.scheme!r}."
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Pools(Generic[PoolT, BackendT]):
    """The httpcore classes of one face (sync or async): all that differs between them."""

    direct: Callable[..., PoolT]
    http_proxy: Callable[..., PoolT]
    socks_proxy: Callable[..., PoolT]
    dialled: Callable[..., PoolT]  # direct, dialling through an outlast backend


#: ``httpx.HTTPTransport``'s pools, dialling through a sync backend.
SYNC_POOLS: Final[Pools[httpcore.ConnectionPool, httpcore.NetworkBackend]] = Pools(
    httpcore.ConnectionPool, httpcore.HTTPProxy, httpcore.SOCKSProxy, DialledPool
)
#: ``httpx.AsyncHTTPTransport``'s pools, dialling through an async backend.
ASYNC_POOLS: Final[Pools[httpcore.AsyncConnectionPool, httpcore.AsyncNetworkBackend]] = Pools(
    httpcore.AsyncConnectionPool,
    httpcore.AsyncHTTPProxy,
    httpcore.AsyncSOCKSProxy,
    AsyncDialledPool,
)


def build_pool(
    pools: Pools[PoolT, BackendT],
    *,
    ssl_context: ssl.SSLContext,
    proxy: httpx.Proxy | None,
    limits: httpx.Limits,
    http1: bool,
    http2: bool,
    uds: str | None,
    local_address: str | None,
    retries: int,
    socket_options: Iterable[Any] | None,
    backend: BackendT | None,
) -> PoolT:
    """The pool httpx's transport of this face would build, dialling through ``backend``."""
    common = _common(ssl_context, limits, http1, http2)
    if proxy is None:
        direct = pools.direct if backend is None else pools.dialled
        return direct(
            **common,
            uds=uds,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
            network_backend=backend,
        )
    if proxy.url.scheme in ("http", "https"):
        return pools.http_proxy(
            proxy_url=_proxy_url(proxy),
            proxy_auth=proxy.raw_auth,
            proxy_headers=proxy.headers.raw,
            proxy_ssl_context=proxy.ssl_context,
            socket_options=socket_options,
            network_backend=backend,
            **common,
        )
    if proxy.url.scheme in ("socks5", "socks5h"):
        _require_socksio()
        return pools.socks_proxy(
            proxy_url=_proxy_url(proxy),
            proxy_auth=proxy.raw_auth,
            network_backend=backend,
            **common,
        )
    raise _bad_scheme(proxy)
