"""Happy Eyeballs (RFC 8305) over plain sockets, for synchronous callers, TLS included.

:func:`race` dials an ordered list of addresses from one thread without helper
threads: each attempt is a non-blocking socket, driven by one selector. The next
address is started when the previous attempt failed or has not finished within
``delay`` (RFC 8305 section 5, "Connection Attempt Delay", 250 ms); the first attempt
to finish wins and every other one is closed. With ``tls`` an attempt is finished only
when its TLS handshake is, so an address that accepts TCP but never completes the
handshake (a hung process, a wrong port) loses the race like a silent one.

A certificate that fails verification ends the whole dial at once
(:class:`ssl.SSLCertVerificationError` propagates): a wrong certificate is never failed
over into a success. Every other failure ejects its address (through :class:`Report`);
so does losing the race while still silent.

This module must not import httpx, httpcore or anyio: urllib3-based integrations use it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import math
import os
import selectors
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from outlast._dial._core import AllAddressesFailed, Outliers, Report, plan
from outlast._events import Emitter

__all__ = [
    "HAPPY_EYEBALLS_DELAY",
    "TLS",
    "Dialled",
    "certificate_error",
    "create_connection",
    "race",
]

#: RFC 8305 "Connection Attempt Delay": the stagger between racing addresses, seconds.
HAPPY_EYEBALLS_DELAY: Final = 0.25
#: poll(2) needs no descriptor of its own (epoll would cost two system calls per dial).
_Selector: Final = getattr(selectors, "PollSelector", selectors.DefaultSelector)
_IN_PROGRESS: Final = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY})
SocketOption = tuple[int, int, int | bytes | bytearray] | tuple[int, int, None, int]


@dataclasses.dataclass(frozen=True, slots=True)
class TLS:
    """What an attempt's TLS handshake needs: the context and the name to send and check."""

    context: ssl.SSLContext
    server_hostname: str


@dataclasses.dataclass(frozen=True, slots=True)
class Dialled:
    """The race's winner: a connected, blocking socket (an ``SSLSocket`` with TLS)."""

    sock: socket.socket
    address: str
    position: int


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind ``exc`` (its cause chain), if any."""
    current: BaseException | None = exc
    for _ in range(10):
        if current is None:
            return None
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
    return None


class _Attempt:
    """One address being dialled: TCP connect, then (with TLS) the handshake."""

    __slots__ = ("address", "position", "sock", "started", "tls")

    def __init__(self, address: str, position: int, sock: socket.socket, started: float) -> None:
        self.address = address
        self.position = position
        self.sock = sock
        self.started = started
        self.tls = False  # the handshake has begun

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _sockaddr(address: str, port: int) -> tuple[int, tuple[object, ...]]:
    if ":" not in address:
        return socket.AF_INET, (address, port)
    info = socket.getaddrinfo(
        address, port, socket.AF_INET6, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
    )
    return socket.AF_INET6, info[0][4]


def race(
    addresses: Sequence[str],
    port: int,
    timeout: float | None,
    report: Report,
    *,
    tls: TLS | None = None,
    delay: float = HAPPY_EYEBALLS_DELAY,
    source_address: tuple[str, int] | None = None,
    socket_options: Iterable[SocketOption] = (),
    clock: Callable[[], float] = time.monotonic,
) -> Dialled:
    """Connect to the first of ``addresses`` (in this order) to finish, racing them.

    ``timeout`` bounds the whole dial, seconds (None: unbounded). Failed and overtaken
    attempts are reported (and ejected) through ``report``; the winner's connect is
    reported, a failover too. Raises :class:`AllAddressesFailed` (each error an
    ``OSError``; ``timed_out`` when the timeout ran out) or, for a certificate that
    fails verification, :class:`ssl.SSLCertVerificationError` at once.
    """
    if not addresses:
        raise AllAddressesFailed(report.host, port, (), timed_out=False)
    options = tuple(socket_options)
    if timeout is not None and timeout <= 0:  # nothing left of the caller's time
        raise AllAddressesFailed(report.host, port, (), timed_out=True)
    if len(addresses) == 1:  # nothing to race: the kernel waits (as socket.create_connection)
        return _alone(addresses[0], port, timeout, report, tls, source_address, options, clock)
    deadline = math.inf if timeout is None else clock() + timeout
    errors: list[tuple[str, Exception]] = []
    selector = _Selector()
    live: dict[int, _Attempt] = {}  # position -> attempt in flight
    winner: _Attempt | None = None
    position = 0
    next_at = -math.inf
    try:
        while winner is None:
            now = clock()
            if now >= deadline:
                break
            if position < len(addresses) and (now >= next_at or not live):
                attempt, done = _start(
                    addresses[position],
                    position,
                    port,
                    tls,
                    source_address,
                    options,
                    now,
                    selector,
                    errors,
                    report,
                )
                position += 1
                # A failed attempt starts the next one at once (RFC 8305 section 5).
                next_at = now + delay if attempt is not None else -math.inf
                if attempt is not None:
                    live[attempt.position] = attempt
                    if done:
                        winner = attempt
                continue
            if not live:
                break  # every address failed
            wait = deadline if position >= len(addresses) else min(deadline, next_at)
            for key, _ in selector.select(None if wait == math.inf else max(wait - now, 0.0)):
                attempt = key.data
                try:
                    done = _step(attempt, tls, selector)
                except OSError as exc:
                    del live[attempt.position]
                    _drop(attempt, selector)
                    _failed(attempt.address, port, exc, errors, report)
                    next_at = -math.inf
                    continue
                if done:
                    winner = attempt
                    break
        if winner is None:
            timed_out = clock() >= deadline
            for attempt in live.values():  # still silent at the deadline
                silent = TimeoutError(f"timed out after {clock() - attempt.started:.2f} s")
                _failed(attempt.address, port, silent, errors, report)
            raise AllAddressesFailed(report.host, port, errors, timed_out=timed_out)
        live.pop(winner.position, None)
        _unregister(winner, selector)
        now = clock()
        for earlier in sorted(live):  # lost by at least the stagger: eject them too
            if earlier < winner.position:
                since = live[earlier].started
                report.failed(
                    live[earlier].address,
                    port,
                    TimeoutError(
                        f"no connection after {(now - since) * 1000:.0f} ms, "
                        "while an address started later connected"
                    ),
                )
        winner.sock.setblocking(True)
        report.connected(winner.address, port, winner.position)
        return Dialled(winner.sock, winner.address, winner.position)
    except BaseException:
        if winner is not None:
            winner.close()
        raise
    finally:
        for attempt in live.values():
            attempt.close()
        selector.close()


def _alone(
    address: str,
    port: int,
    timeout: float | None,
    report: Report,
    tls: TLS | None,
    source_address: tuple[str, int] | None,
    options: tuple[SocketOption, ...],
    clock: Callable[[], float],
) -> Dialled:
    """Dial one address with blocking calls under ``timeout``: :func:`race` of one."""
    started = clock()
    sock: socket.socket | None = None
    errors: list[tuple[str, Exception]] = []
    try:
        family, sockaddr = _sockaddr(address, port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        for option in options:
            sock.setsockopt(*option)
        if source_address is not None:
            sock.bind(source_address)
        sock.settimeout(timeout)
        sock.connect(sockaddr)
        if tls is not None:
            if timeout is not None:
                sock.settimeout(max(timeout - (clock() - started), 0.001))
            sock = _wrap(sock, tls, handshake=True)
    except OSError as exc:
        if sock is not None:
            sock.close()
        _failed(address, port, exc, errors, report)  # raises for a wrong certificate
        timed_out = isinstance(exc, TimeoutError)
        raise AllAddressesFailed(report.host, port, errors, timed_out=timed_out) from exc
    sock.settimeout(None)
    report.connected(address, port, 0)
    return Dialled(sock, address, 0)


def _failed(
    address: str, port: int, exc: OSError, errors: list[tuple[str, Exception]], report: Report
) -> None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        report.failed(address, port, exc, eject=False)
        raise exc
    errors.append((address, exc))
    report.failed(address, port, exc)


def _start(
    address: str,
    position: int,
    port: int,
    tls: TLS | None,
    source_address: tuple[str, int] | None,
    options: tuple[SocketOption, ...],
    now: float,
    selector: selectors.BaseSelector,
    errors: list[tuple[str, Exception]],
    report: Report,
) -> tuple[_Attempt | None, bool]:
    """Begin dialling ``address``: (the attempt, whether it already finished)."""
    sock: socket.socket | None = None
    try:
        family, sockaddr = _sockaddr(address, port)
        sock = socket.socket(family, socket.SOCK_STREAM)
        for option in options:
            sock.setsockopt(*option)
        if source_address is not None:
            sock.bind(source_address)
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
        if code and code not in _IN_PROGRESS:
            raise OSError(code, os.strerror(code))
    except OSError as exc:
        if sock is not None:
            sock.close()
        _failed(address, port, exc, errors, report)
        return None, False
    attempt = _Attempt(address, position, sock, now)
    if code == 0:  # connected at once (loopback can)
        try:
            done = _step(attempt, tls, selector, connected=True)
        except OSError as exc:
            attempt.close()
            _failed(address, port, exc, errors, report)
            return None, False
        return attempt, done
    selector.register(sock, selectors.EVENT_WRITE, attempt)
    return attempt, False


def _unregister(attempt: _Attempt, selector: selectors.BaseSelector) -> None:
    with contextlib.suppress(KeyError, ValueError):
        selector.unregister(attempt.sock)


def _drop(attempt: _Attempt, selector: selectors.BaseSelector) -> None:
    _unregister(attempt, selector)
    attempt.close()


def _wrap(sock: socket.socket, tls: TLS, *, handshake: bool = False) -> ssl.SSLSocket:
    try:
        return tls.context.wrap_socket(
            sock, server_hostname=tls.server_hostname, do_handshake_on_connect=handshake
        )
    except OSError as exc:
        # A peer that reset the connection just before the wrap: CPython's SSLSocket._create
        # re-raises recv's error without closing the SSLSocket it made (and now owns the
        # descriptor), so close it here rather than leave it to the garbage collector.
        tb = exc.__traceback__
        while tb is not None:
            made = tb.tb_frame.f_locals.get("self")
            if isinstance(made, ssl.SSLSocket):
                made.close()
            tb = tb.tb_next
        raise


def _step(
    attempt: _Attempt, tls: TLS | None, selector: selectors.BaseSelector, connected: bool = False
) -> bool:
    """Advance ``attempt`` after its socket became ready; True when it is finished."""
    if not attempt.tls:
        if not connected:
            code = attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, os.strerror(code))
        if tls is None:
            return True
        if not connected:
            selector.unregister(attempt.sock)
        attempt.sock = _wrap(attempt.sock, tls)
        attempt.tls = True
        selector.register(attempt.sock, selectors.EVENT_WRITE, attempt)
    try:
        attempt.sock.do_handshake()  # type: ignore[attr-defined]
    except ssl.SSLWantReadError:
        selector.modify(attempt.sock, selectors.EVENT_READ, attempt)
        return False
    except ssl.SSLWantWriteError:
        selector.modify(attempt.sock, selectors.EVENT_WRITE, attempt)
        return False
    return True


def create_connection(
    host: str,
    addresses: Sequence[str],
    port: int,
    *,
    timeout: float | None,
    outliers: Outliers,
    emitter: Emitter,
    source_address: tuple[str, int] | None = None,
    socket_options: Iterable[tuple[int, int, int | bytes]] = (),
) -> socket.socket:
    """A connected socket to the first of ``addresses`` that answers (for urllib3-style users).

    ``host`` is the name the addresses belong to (for events). The addresses are raced
    by Happy Eyeballs (RFC 8305, :func:`race`) within ``timeout``; the
    socket returned keeps ``timeout`` as its timeout, as :func:`socket.create_connection`
    does. Raises :class:`AllAddressesFailed` (its ``errors`` hold each ``OSError``).

    Added in 0.1.0.
    """
    for address in addresses:
        ipaddress.ip_address(address)  # a name here would bypass the resolver
    report = Report(emitter, host, outliers)
    ordered = plan(addresses, port, outliers)
    dialled = race(
        ordered,
        port,
        timeout,
        report,
        source_address=source_address,
        socket_options=tuple(socket_options),
    )
    dialled.sock.settimeout(timeout)
    return dialled.sock
