"""httpcore's direct connection pool, with each connection dialled by outlast.

:class:`DialledPool` (and :class:`AsyncDialledPool`) is httpcore's ``ConnectionPool``
whose direct connections get their own :class:`~outlast.http._backend.OriginDial`: the
TLS handshake happens inside the Happy Eyeballs race, with the URL's canonical name
(a request's ``sni_hostname`` extension still wins). A connection is the
``HTTPConnection`` httpcore would make, except that an idle one whose address has
left its name's answer (once the answer that listed it expired) reports itself
expired, so the pool closes it instead of reusing it. Proxied and Unix-socket
connections are httpcore's own.
"""

from __future__ import annotations

from typing import Any

import httpcore

from outlast.http._backend import AsyncBackend, AsyncOriginDial, OriginDial, SyncBackend

__all__ = ["AsyncDialledPool", "DialledPool"]


class _Connection(httpcore.HTTPConnection):
    def __init__(self, dial: OriginDial, **kwargs: Any) -> None:
        super().__init__(network_backend=dial, **kwargs)
        self._outlast_dial = dial

    def _connect(self, request: httpcore.Request) -> httpcore.NetworkStream:
        # The request that opens the connection names its SNI (httpx's ``sni_hostname``).
        self._outlast_dial.sni = request.extensions.get("sni_hostname")
        return super()._connect(request)

    def has_expired(self) -> bool:
        # httpcore's HTTPConnection.has_expired, inlined (the pool asks twice per request).
        connection = self._connection
        if connection is None:
            return self._connect_failed
        if connection.has_expired():
            return True
        tenure = self._outlast_dial.tenure  # cheap until the answer that listed it expired
        return (
            tenure is not None
            and tenure.clock() >= tenure.recheck_at
            and connection.is_idle()
            and tenure.over()
        )


class _AsyncConnection(httpcore.AsyncHTTPConnection):
    def __init__(self, dial: AsyncOriginDial, **kwargs: Any) -> None:
        super().__init__(network_backend=dial, **kwargs)
        self._outlast_dial = dial

    async def _connect(self, request: httpcore.Request) -> httpcore.AsyncNetworkStream:
        self._outlast_dial.sni = request.extensions.get("sni_hostname")
        return await super()._connect(request)

    def has_expired(self) -> bool:
        connection = self._connection  # see _Connection.has_expired
        if connection is None:
            return self._connect_failed
        if connection.has_expired():
            return True
        tenure = self._outlast_dial.tenure
        return (
            tenure is not None
            and tenure.clock() >= tenure.recheck_at
            and connection.is_idle()
            and tenure.over()
        )


def _direct(pool: Any) -> bool:
    return pool._uds is None and getattr(pool, "_proxy", None) is None


def _options(pool: Any, origin: httpcore.Origin) -> dict[str, Any]:
    return {
        "origin": origin,
        "ssl_context": pool._ssl_context,
        "keepalive_expiry": pool._keepalive_expiry,
        "http1": pool._http1,
        "http2": pool._http2,
        "retries": pool._retries,
        "local_address": pool._local_address,
        "uds": pool._uds,
        "socket_options": pool._socket_options,
    }


class DialledPool(httpcore.ConnectionPool):
    """httpcore's ``ConnectionPool`` whose direct connections outlast dials (see module)."""

    def create_connection(self, origin: httpcore.Origin) -> httpcore.ConnectionInterface:
        backend = self._network_backend
        if not isinstance(backend, SyncBackend) or not _direct(self):
            return super().create_connection(origin)
        dial = OriginDial(backend, origin, self._ssl_context, self._http2)
        return _Connection(dial, **_options(self, origin))


class AsyncDialledPool(httpcore.AsyncConnectionPool):
    """:class:`DialledPool` for the async face."""

    def create_connection(self, origin: httpcore.Origin) -> httpcore.AsyncConnectionInterface:
        backend = self._network_backend
        if not isinstance(backend, AsyncBackend) or not _direct(self):
            return super().create_connection(origin)
        dial = AsyncOriginDial(backend, origin, self._ssl_context, self._http2)
        return _AsyncConnection(dial, **_options(self, origin))
