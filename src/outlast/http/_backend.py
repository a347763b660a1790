"""httpcore network backends that resolve with outlast and dial the resolved addresses.

httpcore asks a backend for a TCP stream to ``(host, port)``; these backends resolve
``host`` with an :class:`outlast.Resolver` and connect to its addresses, healthy ones
first, racing them by Happy Eyeballs (RFC 8305): the next address is started when the
previous one failed or has not connected within 250 ms; the first to connect wins, the
others are closed (sync: :func:`outlast._dial.race` over non-blocking sockets, no
threads; async: anyio tasks). The stream they return is httpcore's own, wrapped to
watch the address until its first response byte (:mod:`outlast.http._streams`).

For a direct HTTPS connection the pool asks :meth:`SyncBackend.dial` (through
:class:`OriginDial`) for the TLS handshake too, inside the race: an address that
accepts TCP but never finishes the handshake loses to the next one instead of taking
the whole connect timeout. SNI and certificate checks use the URL's canonical hostname
(no trailing dot, IDNA A-label); a certificate that fails verification ends the dial
at once and is never failed over. The pool stays keyed by the hostname and URLs are
never rewritten.

Errors leave as httpcore's ``ConnectError`` / ``ConnectTimeout`` (httpx maps them to its
own), chained to the :class:`~outlast.ResolveError` or the last dial error.
"""

from __future__ import annotations

import math
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Final, TypeAlias

import anyio
import httpcore
from httpcore._backends.sync import SyncStream

from outlast._dial import (
    HAPPY_EYEBALLS_DELAY,
    TLS,
    AllAddressesFailed,
    Outliers,
    Report,
    certificate_error,
    dial_serial,
    plan,
    race,
)
from outlast._events import Emitter
from outlast._exceptions import ResolveError
from outlast.dns import Answer, Resolver
from outlast.http._streams import (
    AsyncWatchedStream,
    Tenure,
    Watch,
    WatchedStream,
    canonical_host,
)

__all__ = [
    "HAPPY_EYEBALLS_DELAY",
    "AsyncBackend",
    "AsyncOriginDial",
    "OriginDial",
    "SyncBackend",
]

_DIAL_FAILURES: Final = (httpcore.ConnectError, httpcore.ConnectTimeout)
_NODELAY: Final = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # httpcore sets it too
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)
#: Given (host, httpcore's backend), the backend that dials that host's addresses.
#: ``OUTLAST_CHAOS`` uses it to inject connect faults; None dials with httpcore's own.
SyncDialer: TypeAlias = Callable[[str, httpcore.NetworkBackend], httpcore.NetworkBackend]
AsyncDialer: TypeAlias = Callable[[str, httpcore.AsyncNetworkBackend], httpcore.AsyncNetworkBackend]


def _resolve_failed(exc: ResolveError, port: int) -> httpcore.ConnectError:
    return httpcore.ConnectError(f"cannot connect to {exc.host!r} port {port}: {exc}")


def _resolver_unusable(exc: RuntimeError, host: str, port: int) -> httpcore.ConnectError:
    # A closed (shared) resolver: the caller gets an httpx error, as for any other
    # failure to find an address, with the resolver's own error chained.
    return httpcore.ConnectError(f"cannot connect to {host!r} port {port}: {exc}")


def _all_failed(exc: AllAddressesFailed) -> httpcore.ConnectError | httpcore.ConnectTimeout:
    if exc.timed_out or (
        exc.errors
        and all(isinstance(e, (httpcore.ConnectTimeout, TimeoutError)) for _, e in exc.errors)
    ):
        return httpcore.ConnectTimeout(str(exc))
    return httpcore.ConnectError(str(exc))


def _wrong_certificate(exc: ssl.SSLCertVerificationError) -> httpcore.ConnectError:
    return httpcore.ConnectError(str(exc))


def tls_for(
    origin: httpcore.Origin, ssl_context: ssl.SSLContext | None, http2: bool, sni: str | None
) -> TLS | None:
    """The handshake a direct connection to ``origin`` needs (None for plain HTTP).

    ``sni``: the request's ``sni_hostname`` extension, which wins over the origin's name.
    Sets the context's ALPN protocols as httpcore does before its own handshake.
    """
    if origin.scheme not in (b"https", b"wss"):
        return None
    context = ssl_context if ssl_context is not None else httpcore.default_ssl_context()
    context.set_alpn_protocols(["http/1.1", "h2"] if http2 else ["http/1.1"])
    name = sni or canonical_host(origin.host.decode("ascii"))
    return TLS(context, name)


class _CertificateRejected(Exception):
    """Carries a wrong certificate out of :func:`dial_serial` (it is never failed over)."""

    def __init__(self, error: httpcore.ConnectError) -> None:
        super().__init__(str(error))
        self.error = error


class SyncBackend(httpcore.NetworkBackend):
    """Resolves with outlast and races addresses by Happy Eyeballs, within one connect timeout.

    Added in 0.1.0.
    """

    def __init__(
        self,
        resolver: Resolver,
        outliers: Outliers,
        emitter: Emitter,
        *,
        delay: float = HAPPY_EYEBALLS_DELAY,
        dialer: SyncDialer | None = None,
    ) -> None:
        self._resolver = resolver
        self._outliers = outliers
        self._emitter = emitter
        self._delay = delay
        self._inner = httpcore.SyncBackend()
        self._dialer = dialer

    @property
    def resolver(self) -> Resolver:
        return self._resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        return self.dial(host, port, timeout, local_address, socket_options, None)[0]

    def dial(
        self,
        host: str,
        port: int,
        timeout: float | None,
        local_address: str | None,
        socket_options: Iterable[SocketOption] | None,
        tls: TLS | None,
    ) -> tuple[WatchedStream, Answer, str]:
        """A stream to one of ``host``'s addresses, TLS done when ``tls`` is given.

        Returns the stream, the answer dialled and the address that won.
        """
        options = [] if socket_options is None else list(socket_options)
        started = time.monotonic()
        try:  # resolution counts against the connect timeout
            answer = self._resolver.resolve(host, timeout=timeout)
        except ResolveError as exc:
            raise _resolve_failed(exc, port) from exc
        except RuntimeError as exc:  # the resolver is closed
            raise _resolver_unusable(exc, host, port) from exc
        if timeout is not None:
            timeout = max(0.0, timeout - (time.monotonic() - started))
        ordered = plan(answer.addresses, port, self._outliers)
        report = Report(self._emitter, host, self._outliers)
        if self._dialer is not None:
            stream, address = self._through(
                host, ordered, port, timeout, local_address, options, tls, report
            )
        else:
            source = None if local_address is None else (local_address, 0)
            try:
                dialled = race(
                    ordered,
                    port,
                    timeout,
                    report,
                    tls=tls,
                    delay=self._delay,
                    source_address=source,
                    socket_options=[*options, _NODELAY],
                )
            except AllAddressesFailed as exc:
                raise _all_failed(exc) from (exc.errors[-1][1] if exc.errors else exc)
            except ssl.SSLCertVerificationError as exc:
                raise _wrong_certificate(exc) from exc
            stream, address = SyncStream(dialled.sock), dialled.address
        watched = WatchedStream(stream, Watch(report, address, port), tls is not None)
        return watched, answer, address

    def _through(
        self,
        host: str,
        ordered: list[str],
        port: int,
        timeout: float | None,
        local_address: str | None,
        options: list[SocketOption],
        tls: TLS | None,
        report: Report,
    ) -> tuple[httpcore.NetworkStream, str]:
        """Dial in turn through the chaos dialer's backend (a rehearsal), TLS included."""
        assert self._dialer is not None
        inner = self._dialer(host, self._inner)

        def connect(address: str, budget: float | None) -> tuple[httpcore.NetworkStream, str]:
            started = time.monotonic()
            stream = inner.connect_tcp(address, port, budget, local_address, options)
            if tls is None:
                return stream, address
            left = None if budget is None else max(budget - (time.monotonic() - started), 0.0)
            try:
                return stream.start_tls(tls.context, tls.server_hostname, left), address
            except httpcore.ConnectError as exc:
                wrong = certificate_error(exc)
                if wrong is not None:
                    report.failed(address, port, wrong, eject=False)
                    raise _CertificateRejected(exc) from exc
                raise

        try:
            return dial_serial(ordered, port, timeout, connect, _DIAL_FAILURES, report)
        except AllAddressesFailed as exc:
            raise _all_failed(exc) from (exc.errors[-1][1] if exc.errors else exc)
        except _CertificateRejected as exc:
            raise exc.error from exc.error.__cause__

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class OriginDial(httpcore.NetworkBackend):
    """The network backend of one direct connection: dials its origin, TLS inside the race.

    Remembers the address it connected to and for how long the name lists it
    (:attr:`tenure`), so the pool can retire the connection when the address leaves.
    """

    def __init__(
        self,
        backend: SyncBackend,
        origin: httpcore.Origin,
        ssl_context: ssl.SSLContext | None,
        http2: bool,
    ) -> None:
        self._backend = backend
        self._origin = origin
        self._ssl_context = ssl_context
        self._http2 = http2
        self.tenure: Tenure | None = None
        #: The ``sni_hostname`` of the request that opens the connection, if it has one.
        self.sni: str | None = None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        tls = tls_for(self._origin, self._ssl_context, self._http2, self.sni)
        stream, answer, address = self._backend.dial(
            host, port, timeout, local_address, socket_options, tls
        )
        self.tenure = Tenure(self._backend.resolver, answer, address)
        return stream

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        return self._backend.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class AsyncBackend(httpcore.AsyncNetworkBackend):
    """Resolves with outlast and races addresses by Happy Eyeballs (RFC 8305).

    Needs asyncio (the resolver's ``aresolve`` is asyncio's).

    Added in 0.1.0.
    """

    def __init__(
        self,
        resolver: Resolver,
        outliers: Outliers,
        emitter: Emitter,
        *,
        delay: float = HAPPY_EYEBALLS_DELAY,
        dialer: AsyncDialer | None = None,
    ) -> None:
        self._resolver = resolver
        self._outliers = outliers
        self._emitter = emitter
        self._delay = delay
        self._inner = httpcore.AnyIOBackend()
        self._dialer = dialer

    @property
    def resolver(self) -> Resolver:
        return self._resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return (await self.dial(host, port, timeout, local_address, socket_options, None))[0]

    async def dial(
        self,
        host: str,
        port: int,
        timeout: float | None,  # noqa: ASYNC109 - httpcore's connect timeout
        local_address: str | None,
        socket_options: Iterable[SocketOption] | None,
        tls: TLS | None,
    ) -> tuple[AsyncWatchedStream, Answer, str]:
        """:meth:`SyncBackend.dial` for the async face.

        A fresh answer held in memory (the common case) is read without awaiting, and a
        name with one address is dialled without a race: neither reads the clock (under
        anyio that is several calls) unless a timeout must be shared between phases.
        """
        options = None if socket_options is None else list(socket_options)
        resolver = self._resolver
        answer = resolver._hit(host)  # what aresolve() serves first, without awaiting it
        if answer is None:
            started = anyio.current_time()
            try:  # resolution counts against the connect timeout
                answer = await resolver.aresolve(host, timeout=timeout)
            except ResolveError as exc:
                raise _resolve_failed(exc, port) from exc
            except RuntimeError as exc:  # the resolver is closed
                raise _resolver_unusable(exc, host, port) from exc
            if timeout is not None:
                timeout = max(0.0, timeout - (anyio.current_time() - started))
        ordered = plan(answer.addresses, port, self._outliers)
        report = Report(self._emitter, host, self._outliers)
        inner = self._inner if self._dialer is None else self._dialer(host, self._inner)
        if len(ordered) == 1:  # nothing to race: no task group, no deadline to share
            address = ordered[0]
            try:
                stream = await _connect_alone(
                    inner, address, port, timeout, local_address, options, tls
                )
            except _DIAL_FAILURES as exc:
                rejected = certificate_error(exc)
                report.failed(address, port, rejected or exc, eject=rejected is None)
                raise
            report.connected(address, port, 0)
        else:
            try:
                stream, address = await self._race(
                    inner, ordered, port, timeout, local_address, options, tls, report
                )
            except AllAddressesFailed as exc:
                raise _all_failed(exc) from (exc.errors[-1][1] if exc.errors else exc)
        watched = AsyncWatchedStream(stream, Watch(report, address, port), tls is not None)
        return watched, answer, address

    async def _race(
        self,
        inner: httpcore.AsyncNetworkBackend,
        ordered: list[str],
        port: int,
        budget: float | None,
        local_address: str | None,
        options: list[SocketOption] | None,
        tls: TLS | None,
        report: Report,
    ) -> tuple[httpcore.AsyncNetworkStream, str]:
        timeout = budget
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        winner: tuple[httpcore.AsyncNetworkStream, str] | None = None
        wrong: Exception | None = None  # a certificate failed: stop everything
        errors: list[tuple[str, Exception]] = []
        started: dict[int, float] = {}  # position -> start time, while in flight

        async def connect(address: str) -> httpcore.AsyncNetworkStream:
            # Each attempt runs to the shared deadline under httpcore's own timeout, so a
            # silent address is reported (and ejected) as timed out, not merely cancelled.
            remaining = None if timeout is None else deadline - anyio.current_time()
            stream = await inner.connect_tcp(address, port, remaining, local_address, options)
            if tls is None:
                return stream
            remaining = None if timeout is None else max(deadline - anyio.current_time(), 0.0)
            try:
                return await stream.start_tls(tls.context, tls.server_hostname, remaining)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
                raise

        async def attempt(position: int, address: str, done: anyio.Event) -> None:
            nonlocal winner, wrong
            started[position] = anyio.current_time()
            try:
                stream = await connect(address)
            except _DIAL_FAILURES as exc:
                rejected = certificate_error(exc)
                if rejected is not None:
                    report.failed(address, port, rejected, eject=False)
                    if wrong is None:
                        wrong = exc
                    group.cancel_scope.cancel()
                    return
                errors.append((address, exc))
                report.failed(address, port, exc)
                return
            finally:
                started.pop(position, None)
                done.set()
            if winner is None and wrong is None:
                winner = (stream, address)
                report.connected(address, port, position)
                overtaken(position)
                group.cancel_scope.cancel()
            else:  # connected a moment after another address won: not needed
                with anyio.CancelScope(shield=True):
                    await stream.aclose()

        def overtaken(position: int) -> None:
            # Addresses started earlier that are still silent lost by at least the stagger:
            # eject them too, or every new connection would wait for them again.
            now = anyio.current_time()
            for earlier, since in sorted(started.items()):
                if earlier < position:
                    silent = TimeoutError(
                        f"no connection after {(now - since) * 1000:.0f} ms, "
                        "while an address started later connected"
                    )
                    report.failed(ordered[earlier], port, silent)

        async with anyio.create_task_group() as group:
            for position, address in enumerate(ordered):
                if anyio.current_time() >= deadline or wrong is not None:
                    break
                done = anyio.Event()
                group.start_soon(attempt, position, address, done)
                with anyio.move_on_after(self._delay):
                    await done.wait()
        if wrong is not None:
            if winner is not None:  # pragma: no cover - the group stops at the first
                await winner[0].aclose()
            raise wrong
        if winner is not None:
            return winner
        timed_out = timeout is not None and anyio.current_time() >= deadline
        raise AllAddressesFailed(report.host, port, errors, timed_out=timed_out)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


def _connect_alone(
    inner: httpcore.AsyncNetworkBackend,
    address: str,
    port: int,
    timeout: float | None,
    local_address: str | None,
    options: list[SocketOption] | None,
    tls: TLS | None,
) -> Awaitable[httpcore.AsyncNetworkStream]:
    """A name's only address: TCP, then TLS (if any) in what remains of ``timeout``.

    Without TLS it is httpcore's own connect, awaited by the caller: no coroutine of
    ours for each resumption of the connect to pass through.
    """
    if tls is None:
        return inner.connect_tcp(address, port, timeout, local_address, options)
    return _connect_tls_alone(inner, address, port, timeout, local_address, options, tls)


async def _connect_tls_alone(
    inner: httpcore.AsyncNetworkBackend,
    address: str,
    port: int,
    timeout: float | None,  # noqa: ASYNC109 - httpcore's connect timeout
    local_address: str | None,
    options: list[SocketOption] | None,
    tls: TLS,
) -> httpcore.AsyncNetworkStream:
    started = anyio.current_time()
    stream = await inner.connect_tcp(address, port, timeout, local_address, options)
    remaining = None if timeout is None else max(timeout - (anyio.current_time() - started), 0.0)
    try:
        return await stream.start_tls(tls.context, tls.server_hostname, remaining)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await stream.aclose()
        raise


class AsyncOriginDial(httpcore.AsyncNetworkBackend):
    """:class:`OriginDial` for the async face."""

    def __init__(
        self,
        backend: AsyncBackend,
        origin: httpcore.Origin,
        ssl_context: ssl.SSLContext | None,
        http2: bool,
    ) -> None:
        self._backend = backend
        self._origin = origin
        self._ssl_context = ssl_context
        self._http2 = http2
        self.tenure: Tenure | None = None
        #: The ``sni_hostname`` of the request that opens the connection, if it has one.
        self.sni: str | None = None

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        tls = tls_for(self._origin, self._ssl_context, self._http2, self.sni)
        stream, answer, address = await self._backend.dial(
            host, port, timeout, local_address, socket_options, tls
        )
        self.tenure = Tenure(self._backend.resolver, answer, address)
        return stream

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._backend.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
