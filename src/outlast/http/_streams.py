"""What a connection through outlast remembers: its address, until it serves, and for how long.

:class:`WatchedStream` / :class:`AsyncWatchedStream` wrap the httpcore stream a backend
dialled. Until the first byte of a response arrives, a failure on a fresh connection
(writing the request, reading nothing, the peer closing, a read timeout) is that
address's failure: it is reported and the address ejected, exactly as a refused
connect. The first byte restores the address if it was ejected: an address comes
back only after it served, never at a TCP connect (a hung process accepts TCP).
After that byte the wrapper only forwards.

:class:`Tenure` says when a pooled connection must be retired: once the answer that
listed its address has expired and the name's current answer no longer lists it.
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import Callable
from typing import Any, Final

import httpcore

from outlast._dial import Report
from outlast._exceptions import ResolveError
from outlast.dns import Answer, Resolver

__all__ = ["AsyncWatchedStream", "Tenure", "Watch", "WatchedStream", "canonical_host"]

#: Seconds between checks while a name's answer is stale (a refresh is under way).
STALE_RECHECK: Final = 1.0


def canonical_host(host: str) -> str:
    """``host`` as certificates name it: no trailing dot (``svc.test.`` is ``svc.test``).

    httpx hands httpcore the IDNA A-label form already (``xn--bcher-kva.test``).
    """
    return host[:-1] if host.endswith(".") else host


class Watch:
    """A fresh connection's address, watched until the connection serves a first byte."""

    __slots__ = ("address", "port", "report")

    def __init__(self, report: Report, address: str, port: int) -> None:
        self.report = report
        self.address = address
        self.port = port

    def failed(self, exc: Exception) -> None:
        self.report.failed(self.address, self.port, exc)

    def served(self) -> None:
        self.report.served(self.address, self.port)


def _closed_early() -> ConnectionError:
    return ConnectionResetError("the connection closed before the first byte of a response")


class WatchedStream(httpcore.NetworkStream):
    """httpcore's sync stream, reporting its address's failure or first response byte.

    ``tls_done``: the dial already made the TLS handshake (with the URL's canonical
    name), so httpcore's ``start_tls`` that follows returns the stream as it is.
    Otherwise (TLS with a target through a proxy's tunnel) the handshake is httpcore's,
    with the name made canonical.
    """

    def __init__(self, inner: httpcore.NetworkStream, watch: Watch | None, tls_done: bool) -> None:
        self._inner = inner
        self._watch = watch
        self._tls_done = tls_done

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        watch = self._watch
        if watch is None:
            return self._inner.read(max_bytes, timeout)
        self._watch = None
        try:
            data = self._inner.read(max_bytes, timeout)
        except Exception as exc:
            watch.failed(exc)
            raise
        if data:
            watch.served()
            # Judged: from now on httpcore calls the inner stream's methods directly.
            self.read = self._inner.read  # type: ignore[method-assign]
            self.write = self._inner.write  # type: ignore[method-assign]
            self.get_extra_info = self._inner.get_extra_info  # type: ignore[method-assign]
        else:
            watch.failed(_closed_early())
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        watch = self._watch
        if watch is None:
            return self._inner.write(buffer, timeout)
        try:
            self._inner.write(buffer, timeout)
        except Exception as exc:
            self._watch = None
            watch.failed(exc)
            raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        if self._tls_done:
            return self
        if server_hostname is not None:  # TLS through a proxy's tunnel: the target's name
            server_hostname = canonical_host(server_hostname)
        return WatchedStream(
            self._inner.start_tls(ssl_context, server_hostname, timeout), self._watch, True
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class AsyncWatchedStream(httpcore.AsyncNetworkStream):
    """:class:`WatchedStream` for the async backend."""

    def __init__(
        self, inner: httpcore.AsyncNetworkStream, watch: Watch | None, tls_done: bool
    ) -> None:
        self._inner = inner
        self._watch = watch
        self._tls_done = tls_done

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        watch = self._watch
        if watch is None:
            return await self._inner.read(max_bytes, timeout)
        self._watch = None
        try:
            data = await self._inner.read(max_bytes, timeout)
        except Exception as exc:  # cancellation is not the address's failure
            watch.failed(exc)
            raise
        if data:
            watch.served()
            # Judged: from now on httpcore calls the inner stream's methods directly.
            self.read = self._inner.read  # type: ignore[method-assign]
            self.write = self._inner.write  # type: ignore[method-assign]
            self.get_extra_info = self._inner.get_extra_info  # type: ignore[method-assign]
        else:
            watch.failed(_closed_early())
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        watch = self._watch
        if watch is None:
            return await self._inner.write(buffer, timeout)
        try:
            await self._inner.write(buffer, timeout)
        except Exception as exc:
            self._watch = None
            watch.failed(exc)
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._tls_done:
            return self
        if server_hostname is not None:  # TLS through a proxy's tunnel: the target's name
            server_hostname = canonical_host(server_hostname)
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return AsyncWatchedStream(inner, self._watch, True)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _held(resolver: Resolver, host: str) -> Answer | None:
    """The answer ``resolver`` holds for ``host`` now, without waiting for a lookup.

    A stale answer starts its refresh; a name not held starts a lookup and gives None.
    Raises :class:`~outlast.ResolveError` when the name is known to have no addresses.
    """
    step = resolver._plan(host)  # the resolver's non-blocking read (no public one yet)
    return step if isinstance(step, Answer) else None


class Tenure:
    """How long a pooled connection to ``address`` may live: while its name still lists it.

    Checked when the pool looks at an idle connection (cheap until ``recheck_at``). After
    the answer that listed the address expires, the name's current answer is read
    without waiting: if it still lists the address the tenure runs to that answer's
    expiry, if it does not (or the name has no addresses now) the connection is retired.
    An answer with no TTL (an IP literal, a static address) never retires it.
    """

    __slots__ = ("_resolver", "address", "clock", "host", "recheck_at")

    def __init__(
        self,
        resolver: Resolver,
        answer: Answer,
        address: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self.clock = clock
        self.host = answer.host
        self.address = address
        ttl = answer.ttl
        if ttl <= 0:
            self.recheck_at = math.inf
        else:
            self.recheck_at = clock() + (STALE_RECHECK if answer.stale else ttl)

    def over(self) -> bool:
        """True when the connection must be retired."""
        now = self.clock()
        if now < self.recheck_at:
            return False
        try:
            answer = _held(self._resolver, self.host)
        except ResolveError:
            return True  # the name has no addresses now
        except RuntimeError:  # the resolver was closed: nothing to compare with, keep it
            self.recheck_at = math.inf
            return False
        if answer is None:  # not held any more: a lookup was started, look again soon
            self.recheck_at = now + STALE_RECHECK
            return False
        if self.address not in answer.addresses:
            return True
        if answer.stale or answer.ttl <= 0:
            self.recheck_at = now + STALE_RECHECK
        else:
            self.recheck_at = now + answer.ttl
        return False
