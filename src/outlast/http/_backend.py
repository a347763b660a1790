"""httpcore network backends that resolve with outlast and dial the resolved addresses.

httpcore asks a backend for a TCP stream to ``(host, port)``; these backends resolve
``host`` with an :class:`outlast.Resolver` and connect to its addresses, healthy ones
first. The stream they return is httpcore's own (each address is dialled through
httpcore's default backend with the address as its host), so TLS is started by httpcore
afterwards with ``server_hostname`` = the URL's hostname: SNI and certificate checks
keep the name, the pool stays keyed by it, and URLs are never rewritten.

The sync backend tries addresses one after another within the connect timeout. The
async backend races them by Happy Eyeballs (RFC 8305): the next address is started
when the previous one failed or has not connected within 250 ms; the first to connect
wins, the others are cancelled.

Errors leave as httpcore's ``ConnectError`` / ``ConnectTimeout`` (httpx maps them to its
own), chained to the :class:`~outlast.ResolveError` or the last dial error.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Final, TypeAlias

import anyio
import httpcore

from outlast._dial import AllAddressesFailed, Outliers, Report, dial_serial, plan
from outlast._events import Emitter
from outlast._exceptions import ResolveError
from outlast.dns import Resolver

__all__ = ["HAPPY_EYEBALLS_DELAY", "AsyncBackend", "SyncBackend"]

#: RFC 8305 "Connection Attempt Delay": the stagger between racing addresses.
HAPPY_EYEBALLS_DELAY: Final = 0.25
_DIAL_FAILURES: Final = (httpcore.ConnectError, httpcore.ConnectTimeout)
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
        exc.errors and all(isinstance(e, httpcore.ConnectTimeout) for _, e in exc.errors)
    ):
        return httpcore.ConnectTimeout(str(exc))
    return httpcore.ConnectError(str(exc))


class SyncBackend(httpcore.NetworkBackend):
    """Resolves with outlast and dials addresses in turn, within one connect timeout.

    Added in 0.1.0.
    """

    def __init__(
        self,
        resolver: Resolver,
        outliers: Outliers,
        emitter: Emitter,
        *,
        dialer: SyncDialer | None = None,
    ) -> None:
        self._resolver = resolver
        self._outliers = outliers
        self._emitter = emitter
        self._inner = httpcore.SyncBackend()
        self._dialer = dialer

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        options = None if socket_options is None else list(socket_options)
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
        inner = self._inner if self._dialer is None else self._dialer(host, self._inner)

        def connect(address: str, budget: float | None) -> httpcore.NetworkStream:
            return inner.connect_tcp(address, port, budget, local_address, options)

        report = Report(self._emitter, host, self._outliers)
        try:
            return dial_serial(ordered, port, timeout, connect, _DIAL_FAILURES, report)
        except AllAddressesFailed as exc:
            raise _all_failed(exc) from (exc.errors[-1][1] if exc.errors else exc)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout, socket_options)

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

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        options = None if socket_options is None else list(socket_options)
        started = anyio.current_time()
        try:  # resolution counts against the connect timeout
            answer = await self._resolver.aresolve(host, timeout=timeout)
        except ResolveError as exc:
            raise _resolve_failed(exc, port) from exc
        except RuntimeError as exc:  # the resolver is closed
            raise _resolver_unusable(exc, host, port) from exc
        if timeout is not None:
            timeout = max(0.0, timeout - (anyio.current_time() - started))
        ordered = plan(answer.addresses, port, self._outliers)
        report = Report(self._emitter, host, self._outliers)
        inner = self._inner if self._dialer is None else self._dialer(host, self._inner)
        if len(ordered) == 1:  # nothing to race: skip the task group
            try:
                stream = await inner.connect_tcp(ordered[0], port, timeout, local_address, options)
            except _DIAL_FAILURES as exc:
                report.failed(ordered[0], port, exc)
                raise
            report.connected(ordered[0], port, 0)
            return stream
        try:
            return await self._race(inner, ordered, port, timeout, local_address, options, report)
        except AllAddressesFailed as exc:
            raise _all_failed(exc) from (exc.errors[-1][1] if exc.errors else exc)

    async def _race(
        self,
        inner: httpcore.AsyncNetworkBackend,
        ordered: list[str],
        port: int,
        budget: float | None,
        local_address: str | None,
        options: list[SocketOption] | None,
        report: Report,
    ) -> httpcore.AsyncNetworkStream:
        timeout = budget
        deadline = math.inf if timeout is None else anyio.current_time() + timeout
        winner: httpcore.AsyncNetworkStream | None = None
        errors: list[tuple[str, Exception]] = []
        started: dict[int, float] = {}  # position -> start time, while in flight

        async def attempt(position: int, address: str, done: anyio.Event) -> None:
            nonlocal winner
            started[position] = anyio.current_time()
            # Each attempt runs to the shared deadline under httpcore's own timeout, so a
            # silent address is reported (and ejected) as timed out, not merely cancelled.
            remaining = None if timeout is None else deadline - anyio.current_time()
            try:
                stream = await inner.connect_tcp(address, port, remaining, local_address, options)
            except _DIAL_FAILURES as exc:
                errors.append((address, exc))
                report.failed(address, port, exc)
                return
            finally:
                started.pop(position, None)
                done.set()
            if winner is None:
                winner = stream
                report.connected(address, port, position)
                overtaken(position)
                group.cancel_scope.cancel()
            else:  # connected a moment after another address won: not needed
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
                if anyio.current_time() >= deadline:
                    break
                done = anyio.Event()
                group.start_soon(attempt, position, address, done)
                with anyio.move_on_after(self._delay):
                    await done.wait()
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
