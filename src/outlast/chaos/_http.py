"""Chaos where connections are dialled and around each HTTP attempt.

Connections: :class:`SyncDialer` / :class:`AsyncDialer` stand in for the httpcore
backend that dials one resolved address. ``connect_refused`` raises what a refused
connect raises (``httpcore.ConnectError``) at once; ``connect_timeout`` waits out the
connect timeout and raises ``httpcore.ConnectTimeout``. outlast's dialler meets them
as real failures: the address is reported and ejected, the next one is tried, and the
policy retries the request.

Requests: :func:`sync_send` / :func:`async_send` wrap one attempt of a transport,
inside its policy. ``latency`` sleeps before the attempt (a delay as long as the
request's read timeout ends in ``httpx.ReadTimeout`` once that has passed, as a slow
server's would); ``http_503`` answers
``503 Service Unavailable`` without sending it, so the policy's classifiers decide
what to retry as they would for a real 503.

Imported by the transports only when ``OUTLAST_CHAOS`` plans one of these faults.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import anyio
import httpcore
import httpx

from outlast._chaosplan import CONNECT_FAULTS, HTTP_FAULTS, ChaosPlan
from outlast._events import Emitter, Listener
from outlast.chaos._events import LOGGER, ChaosArmed, FaultInjected

__all__ = [
    "REFUSED",
    "AsyncDialer",
    "Injector",
    "SyncDialer",
    "async_send",
    "sync_send",
]

#: The message of an injected refusal (a real one reads "[Errno 111] Connection refused").
REFUSED: Final = "[Errno 111] Connection refused (injected by OUTLAST_CHAOS)"
_TIMED_OUT: Final = "timed out (injected by OUTLAST_CHAOS)"
_BODY: Final = b"503 Service Unavailable (injected by OUTLAST_CHAOS)\n"


def _read_timeout(request: httpx.Request) -> float | None:
    timeouts = request.extensions.get("timeout")
    read = timeouts.get("read") if isinstance(timeouts, dict) else None
    return float(read) if isinstance(read, (int, float)) else None


def _timed_out(request: httpx.Request, read: float) -> httpx.ReadTimeout:
    message = f"no response within the {read:g}s read timeout (injected by OUTLAST_CHAOS)"
    return httpx.ReadTimeout(message, request=request)


class SyncDialer(httpcore.NetworkBackend):
    """Dials addresses for one connection to ``host`` through ``inner``, injecting faults.

    Added in 0.1.0.
    """

    def __init__(
        self, inner: httpcore.NetworkBackend, host: str, plan: ChaosPlan, emitter: Emitter
    ) -> None:
        self._inner = inner
        self._host = host
        self._plan = plan
        self._emitter = emitter

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        rule = self._plan.first(CONNECT_FAULTS, self._host)
        if rule is None:
            return self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        _report(self._emitter, rule.fault, self._host, host, port, timeout)
        if rule.fault == "connect_refused":
            raise httpcore.ConnectError(REFUSED)
        if timeout is not None:
            time.sleep(timeout)
        raise httpcore.ConnectTimeout(_TIMED_OUT)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return self._inner.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class AsyncDialer(httpcore.AsyncNetworkBackend):
    """:class:`SyncDialer` for the async transport; an injected timeout can be cancelled.

    Added in 0.1.0.
    """

    def __init__(
        self, inner: httpcore.AsyncNetworkBackend, host: str, plan: ChaosPlan, emitter: Emitter
    ) -> None:
        self._inner = inner
        self._host = host
        self._plan = plan
        self._emitter = emitter

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        rule = self._plan.first(CONNECT_FAULTS, self._host)
        if rule is None:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        _report(self._emitter, rule.fault, self._host, host, port, timeout)
        if rule.fault == "connect_refused":
            raise httpcore.ConnectError(REFUSED)
        if timeout is not None:
            await anyio.sleep(timeout)
        raise httpcore.ConnectTimeout(_TIMED_OUT)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _report(
    emitter: Emitter, fault: str, host: str, address: str, port: int, timeout: float | None
) -> None:
    if fault == "connect_refused":
        detail = "connection refused"
    else:
        detail = "no answer" if timeout is None else f"no answer within {timeout:g}s"
    emitter.emit(FaultInjected(fault, "connect", host, f"{address}:{port}", detail))


def _injected(
    plan: ChaosPlan, emitter: Emitter, request: httpx.Request
) -> tuple[float, httpx.Response | None]:
    """What to do to this attempt: seconds to wait first, and a 503 to answer instead."""
    host = request.url.host
    target = f"{request.method} {request.url.copy_with(query=None)}"
    delay = 0.0
    latency = plan.roll("latency", host)
    if latency is not None:
        delay = latency.seconds
        emitter.emit(FaultInjected("latency", "http", host, target, f"{delay:g}s added"))
    if plan.roll("http_503", host) is None:
        return delay, None
    emitter.emit(FaultInjected("http_503", "http", host, target, "503 Service Unavailable"))
    response = httpx.Response(
        503,
        headers={"content-type": "text/plain", "x-outlast-chaos": "http_503"},
        content=_BODY,
        request=request,
    )
    return delay, response


def sync_send(
    send: Callable[[httpx.Request], httpx.Response], plan: ChaosPlan, emitter: Emitter
) -> Callable[[httpx.Request], httpx.Response]:
    """``send`` (one attempt of a transport) with ``latency`` and ``http_503`` injected."""

    def chaotic(request: httpx.Request) -> httpx.Response:
        delay, response = _injected(plan, emitter, request)
        if delay:
            read = _read_timeout(request)
            if read is not None and delay >= read:
                time.sleep(read)
                raise _timed_out(request, read)
            time.sleep(delay)
        return send(request) if response is None else response

    return chaotic


def async_send(
    send: Callable[[httpx.Request], Awaitable[httpx.Response]], plan: ChaosPlan, emitter: Emitter
) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """:func:`sync_send` for async transports."""

    async def chaotic(request: httpx.Request) -> httpx.Response:
        delay, response = _injected(plan, emitter, request)
        if delay:
            read = _read_timeout(request)
            if read is not None and delay >= read:
                await anyio.sleep(read)
                raise _timed_out(request, read)
            await anyio.sleep(delay)
        return await send(request) if response is None else response

    return chaotic


class Injector:
    """One transport's chaos: the dialers for its backend and the wrapper for its attempts.

    ``sync_dialer`` / ``async_dialer`` are None when the plan has no connect fault (the
    backend then dials with httpcore's own); :meth:`wrap` / :meth:`awrap` return the
    attempt unchanged when it has no ``latency`` or ``http_503``. Events go to
    ``listeners`` and the ``outlast.chaos`` logger.

    Added in 0.1.0.
    """

    __slots__ = ("_http", "_plan", "emitter")

    def __init__(self, plan: ChaosPlan, listeners: Iterable[Listener] = ()) -> None:
        self._plan = plan
        self.emitter = Emitter(LOGGER, listeners)
        self.emitter.emit(ChaosArmed("transport", plan.text))
        self._http = plan.has_any(HTTP_FAULTS)

    @property
    def plan(self) -> ChaosPlan:
        return self._plan

    @property
    def sync_dialer(
        self,
    ) -> Callable[[str, httpcore.NetworkBackend], httpcore.NetworkBackend] | None:
        if not self._plan.has_any(CONNECT_FAULTS):
            return None
        plan, emitter = self._plan, self.emitter

        def dialer(host: str, inner: httpcore.NetworkBackend) -> httpcore.NetworkBackend:
            return SyncDialer(inner, host, plan, emitter)

        return dialer

    @property
    def async_dialer(
        self,
    ) -> Callable[[str, httpcore.AsyncNetworkBackend], httpcore.AsyncNetworkBackend] | None:
        if not self._plan.has_any(CONNECT_FAULTS):
            return None
        plan, emitter = self._plan, self.emitter

        def dialer(host: str, inner: httpcore.AsyncNetworkBackend) -> httpcore.AsyncNetworkBackend:
            return AsyncDialer(inner, host, plan, emitter)

        return dialer

    def wrap(
        self, send: Callable[[httpx.Request], httpx.Response]
    ) -> Callable[[httpx.Request], httpx.Response]:
        """One sync attempt with the plan's HTTP faults (``send`` itself if it has none)."""
        return sync_send(send, self._plan, self.emitter) if self._http else send

    def awrap(
        self, send: Callable[[httpx.Request], Awaitable[httpx.Response]]
    ) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
        """One async attempt with the plan's HTTP faults (``send`` itself if it has none)."""
        return async_send(send, self._plan, self.emitter) if self._http else send
