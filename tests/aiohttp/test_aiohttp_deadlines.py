"""outlast.aiohttp against backends that stall or break: the caller's timeout is the
destination's failure and a hard deadline, and what aiohttp raises is still aiohttp's.

The fault space (phase the backend stalls in x the caller's timeout x scheme) and the
invariant in every cell:

- phase: TLS handshake never finished (accepted, then silent), request read and never
  answered, half the response headers sent, a reset after the request;
- timeout: ``ClientTimeout(total=)``, ``sock_read`` alone, ``sock_connect + sock_read``;
- invariant: the caller gets aiohttp's own exception (``asyncio.TimeoutError`` for
  ``total``, ``aiohttp.ServerTimeoutError`` and its subclasses for the per-socket
  timeouts, ``aiohttp.ClientOSError`` / ``ServerDisconnectedError`` for a reset); every
  such call counts against the origin's breaker, which opens after ``failures`` of them
  (the next call is ``CircuitOpenError`` without touching the backend); the whole call,
  retries included, ends by the deadline of docs/aiohttp.md (``total``, else
  ``connect``/``sock_connect`` + ``sock_read``) plus a scheduling margin.
- the caller's own cancellation is not a verdict: not counted.
- an error outlast does not know (here a trace callback's ``RuntimeError``) is neutral:
  not counted, does not reset the count, and a half-open probe ending so is freed.

Servers are asyncio servers on 127.0.0.1 in the test's own event loop (port 0).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp_helpers import quick_policy

from outlast import CircuitBreaker, Policy, Retry
from outlast.aiohttp import CircuitOpenError, ClientSession, classify_error, classify_result
from outlast.policy import Decision, Outcome
from outlast.testing import set_testing

MODES = ("accept", "request", "partial", "reset")
#: What a scheduling hiccup on a loaded machine may add to a deadline, in seconds.
MARGIN = 0.6


class Stalling:
    """A loopback server that misbehaves in one phase; counts connections and requests."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.requests = 0
        self.port = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            if self.mode == "accept":
                await asyncio.sleep(30)  # accepted (and, for TLS, never handshaken)
                return
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.mode == "request":
                await asyncio.sleep(30)
            elif self.mode == "partial":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n")
                await writer.drain()
                await asyncio.sleep(30)
            elif self.mode == "503-unread" and self.requests < 3:
                # a 503 whose body has not all come: its connection stays taken until freed
                writer.write(b"HTTP/1.1 503 X\r\ncontent-length: 10\r\n\r\nab")
                await writer.drain()
                await asyncio.sleep(30)
            elif self.mode == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @asynccontextmanager
    async def serving(self, ctx: ssl.SSLContext | None = None) -> AsyncIterator[Stalling]:
        # "accept" never answers the client's TLS hello either: the handshake hangs.
        tls = None if self.mode == "accept" else ctx
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=tls)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for writer in self._writers:
                writer.transport.abort()
            await server.wait_closed()


def _breaker_policy(attempts: int = 3) -> Policy:
    return Policy(
        retry=Retry(attempts=attempts, base=0.001, cap=0.005),
        budget=None,
        breaker=CircuitBreaker(failures=2, reset=30, min_reset=30),
        classify_error=classify_error,
        classify_result=classify_result,
    )


async def _call(session: aiohttp.ClientSession, url: str, **kw: Any) -> BaseException | int:
    try:
        async with session.get(url, **kw) as response:
            await response.read()
            return response.status
    except Exception as exc:  # aiohttp's, or what a trace callback raised
        return exc


def _server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.mark.parametrize(
    ("mode", "tls"), [("accept", True), ("request", False), ("partial", False), ("request", True)]
)
def test_a_total_timeout_is_the_backends_failure_and_opens_the_breaker(
    ca: trustme.CA, resolver_for: Any, mode: str, tls: bool
) -> None:
    """Before: the hung call ended as cancellation (or a TimeoutError judged a success)
    and the breaker never opened against a backend that hangs."""
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    policy = _breaker_policy()

    async def main() -> tuple[list[BaseException | int], int, float]:
        server = Stalling(mode)
        async with server.serving(_server_ctx(ca) if tls else None):
            url = f"{'https' if tls else 'http'}://127.0.0.1:{server.port}/"
            timeout = aiohttp.ClientTimeout(total=0.4)
            outcomes: list[BaseException | int] = []
            async with ClientSession(
                resolver=resolver_for(),
                policy=policy,
                timeout=timeout,
                connector_options={"ssl": client_ctx},
            ) as session:
                started = time.monotonic()
                for _ in range(2):
                    outcomes.append(await _call(session, url))
                took = time.monotonic() - started
                before = server.connections
                outcomes.append(await _call(session, url))
                return outcomes, server.connections - before, took

    outcomes, touched, took = asyncio.run(main())
    first, second, third = outcomes
    for outcome in (first, second):
        assert type(outcome) is asyncio.TimeoutError  # aiohttp's own, as it raises it
    assert isinstance(third, CircuitOpenError)
    assert touched == 0
    assert took < 2 * (0.4 + MARGIN)  # each call ended at its total: nothing retried past it


def test_a_tls_handshake_past_sock_connect_is_a_connect_timeout_counted(
    ca: trustme.CA, resolver_for: Any
) -> None:
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> list[BaseException | int]:
        server = Stalling("accept")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=0.2)
        async with (
            server.serving(_server_ctx(ca)),
            ClientSession(
                resolver=resolver_for(),
                policy=_breaker_policy(1),
                timeout=timeout,
                connector_options={"ssl": client_ctx},
            ) as session,
        ):
            url = f"https://127.0.0.1:{server.port}/"
            return [await _call(session, url) for _ in range(3)]

    first, second, third = asyncio.run(main())
    assert isinstance(first, aiohttp.ConnectionTimeoutError)
    assert isinstance(second, aiohttp.ConnectionTimeoutError)
    assert isinstance(third, CircuitOpenError)


def test_a_probe_that_hangs_past_total_is_failed(resolver_for: Any) -> None:
    """Before: its cancellation freed the probe slot unjudged (the breaker stayed half-open)."""
    policy = Policy(
        retry=Retry(attempts=3, base=0.001, cap=0.005),
        budget=None,
        breaker=CircuitBreaker(failures=2, reset=0.3, min_reset=0.3),
        classify_error=classify_error,
        classify_result=classify_result,
    )

    async def main() -> tuple[list[BaseException | int], str | None]:
        server = Stalling("request")
        timeout = aiohttp.ClientTimeout(total=0.3)
        async with (
            server.serving(),
            ClientSession(resolver=resolver_for(), policy=policy, timeout=timeout) as s,
        ):
            url = f"http://127.0.0.1:{server.port}/"
            outcomes = [await _call(s, url) for _ in range(2)]  # opens
            await asyncio.sleep(0.5)  # past the reset: the next call is the probe
            outcomes.append(await _call(s, url))
            return outcomes, policy.for_key(f"http://127.0.0.1:{server.port}").state

    outcomes, state = asyncio.run(main())
    assert all(type(o) is asyncio.TimeoutError for o in outcomes)
    assert state == "open"  # the hung probe failed: open again, not left half-open


def test_testing_mode_frees_a_retried_response_before_the_retry(resolver_for: Any) -> None:
    """Testing mode skips the sleep that frees a retried response: with one pooled
    connection (``limit=1``) the retry would wait for it until the call's timeout."""

    async def main() -> tuple[BaseException | int, int]:
        server = Stalling("503-unread")
        async with (
            server.serving(),
            ClientSession(
                resolver=resolver_for(),
                policy=quick_policy(3),
                timeout=aiohttp.ClientTimeout(total=3),
                connector_options={"limit": 1},
            ) as session,
        ):
            return await _call(session, f"http://127.0.0.1:{server.port}/"), server.requests

    with set_testing(True):
        outcome, requests = asyncio.run(main())
    assert (outcome, requests) == (200, 3)


def test_a_timeout_passed_per_request_is_the_deadline(resolver_for: Any) -> None:
    """A request's own ``timeout=`` replaces the session's (300 s total) as the deadline."""

    async def main() -> tuple[list[BaseException | int], int]:
        server = Stalling("request")
        async with (
            server.serving(),
            ClientSession(resolver=resolver_for(), policy=quick_policy(3)) as session,
        ):
            url = f"http://127.0.0.1:{server.port}/"
            per_request = aiohttp.ClientTimeout(sock_read=0.3)
            outcomes = [
                await _call(session, url, timeout=per_request),
                await _call(session, url, timeout=0.3),
            ]
            return outcomes, server.requests

    (first, second), requests = asyncio.run(main())
    assert isinstance(first, aiohttp.SocketTimeoutError)
    assert type(second) is asyncio.TimeoutError
    assert requests == 2  # one each: neither left time for a retry


def test_sock_read_alone_bounds_the_whole_call_not_each_retry(resolver_for: Any) -> None:
    """Before: a GET retried on read timeouts took attempts x sock_read (3 x 0.5 s)."""

    async def main() -> tuple[BaseException | int, int, float]:
        server = Stalling("request")
        timeout = aiohttp.ClientTimeout(total=None, sock_read=0.5)
        async with (
            server.serving(),
            ClientSession(resolver=resolver_for(), policy=quick_policy(3), timeout=timeout) as s,
        ):
            started = time.monotonic()
            outcome = await _call(s, f"http://127.0.0.1:{server.port}/")
            return outcome, server.requests, time.monotonic() - started

    outcome, requests, took = asyncio.run(main())
    assert isinstance(outcome, aiohttp.SocketTimeoutError)  # the first attempt's own
    assert requests == 1  # no time was left for a retry
    assert took < 0.5 + MARGIN


def test_a_retry_is_cut_at_sock_connect_plus_sock_read(resolver_for: Any) -> None:
    """Deadline 0.8 + 0.8 s: the first read times out at 0.8 s, the retry is cut at 1.6 s."""

    async def main() -> tuple[BaseException | int, int, float]:
        server = Stalling("request")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=0.8, sock_read=0.8)
        async with (
            server.serving(),
            ClientSession(resolver=resolver_for(), policy=quick_policy(3), timeout=timeout) as s,
        ):
            started = time.monotonic()
            outcome = await _call(s, f"http://127.0.0.1:{server.port}/")
            return outcome, server.requests, time.monotonic() - started

    outcome, requests, took = asyncio.run(main())
    assert isinstance(outcome, aiohttp.ServerTimeoutError)
    assert requests == 2
    assert 1.5 < took < 1.6 + MARGIN  # not 3 x 0.8 s


def test_a_reset_get_makes_the_policys_attempts_no_more(resolver_for: Any) -> None:
    """Before: aiohttp re-sent the GET once around the whole middleware: 2 x 3 sends."""

    async def main() -> tuple[BaseException | int, int]:
        server = Stalling("reset")
        async with (
            server.serving(),
            ClientSession(resolver=resolver_for(), policy=quick_policy(3)) as s,
        ):
            return await _call(s, f"http://127.0.0.1:{server.port}/"), server.requests

    outcome, requests = asyncio.run(main())
    assert isinstance(outcome, (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError))
    assert requests == 3


def test_read_timeouts_open_the_breaker_and_resets_count(resolver_for: Any) -> None:
    async def main(mode: str) -> list[BaseException | int]:
        server = Stalling(mode)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=0.3)
        policy = _breaker_policy(1)
        async with (
            server.serving(),
            ClientSession(resolver=resolver_for(), policy=policy, timeout=timeout) as s,
        ):
            url = f"http://127.0.0.1:{server.port}/"
            return [await _call(s, url) for _ in range(3)]

    stalled = asyncio.run(main("request"))
    assert all(isinstance(o, aiohttp.SocketTimeoutError) for o in stalled[:2])
    assert isinstance(stalled[2], CircuitOpenError)
    reset = asyncio.run(main("reset"))
    assert all(
        isinstance(o, (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)) for o in reset[:2]
    )
    assert isinstance(reset[2], CircuitOpenError)


def test_the_callers_own_cancellation_is_not_counted(resolver_for: Any) -> None:
    policy = _breaker_policy(1)

    async def main() -> tuple[int | None, str | None]:
        server = Stalling("request")
        async with (
            server.serving(),
            ClientSession(resolver=resolver_for(), policy=policy) as session,
        ):
            url = f"http://127.0.0.1:{server.port}/"
            for _ in range(3):
                task = asyncio.ensure_future(_call(session, url))
                await asyncio.sleep(0.2)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            key = f"http://127.0.0.1:{server.port}"
            (state,) = [k for k in policy.snapshot().keys if k.key == key]
            return state.failures, state.state

    failures, state = asyncio.run(main())
    assert (failures, state) == (0, "closed")


def _unknown_once() -> tuple[aiohttp.TraceConfig, list[int]]:
    """A trace callback that raises inside aiohttp's request (connection creation) once armed."""
    armed: list[int] = []
    trace = aiohttp.TraceConfig()

    async def boom(*_: Any) -> None:
        if armed:
            armed.pop()
            raise RuntimeError("a bug in a trace callback")

    trace.on_connection_create_start.append(boom)
    return trace, armed


def test_an_unknown_error_is_neutral(resolver_for: Any) -> None:
    """Before: it counted as a success (reset the count; settled a probe as closed)."""
    policy = Policy(
        retry=None,
        budget=None,
        breaker=CircuitBreaker(failures=2, reset=0.3, min_reset=0.3),
        classify_error=classify_error,
        classify_result=classify_result,
    )
    assert classify_error(Outcome(1, error=RuntimeError("?"))) == Decision.NEUTRAL

    async def main() -> list[Any]:
        trace, armed = _unknown_once()
        stalled = Stalling("request")
        seen: list[Any] = []
        async with stalled.serving():
            url = f"http://127.0.0.1:{stalled.port}/"
            key = f"http://127.0.0.1:{stalled.port}"
            timeout = aiohttp.ClientTimeout(total=None, sock_read=0.2)
            async with ClientSession(
                resolver=resolver_for(),
                policy=policy,
                timeout=timeout,
                trace_configs=[trace],
                connector_options={"force_close": True},
            ) as session:
                seen.append(await _call(session, url))  # a read timeout: counted (1)
                armed.append(1)
                seen.append(await _call(session, url))  # unknown: neither way
                seen.append(await _call(session, url))  # a read timeout (2): opens
                seen.append(policy.for_key(key).state)
                await asyncio.sleep(0.5)  # past the reset: the next call is the probe
                armed.append(1)
                seen.append(await _call(session, url))  # the probe ends unknown: freed
                seen.append(policy.for_key(key).state)
        return seen

    seen = asyncio.run(main())
    assert isinstance(seen[0], aiohttp.SocketTimeoutError)
    assert isinstance(seen[1], RuntimeError) or isinstance(seen[1].__cause__, RuntimeError)
    assert isinstance(seen[2], aiohttp.SocketTimeoutError)
    assert seen[3] == "open"
    assert seen[5] == "half-open"  # the probe was freed, not settled as a success


@pytest.mark.skipif(not hasattr(asyncio.Task, "uncancel"), reason="Python 3.11+ counts cancels")
def test_the_callers_cancellation_at_the_retry_deadline_is_not_swallowed(
    resolver_for: Any,
) -> None:
    """The caller cancels its task in the same turn of the loop as the deadline that cuts
    a retry (sock_connect 0.2 + sock_read 0.3: at 0.5 s). Both cancellations reach the
    task as one ``CancelledError``: outlast may take back its own, not the caller's, so
    the task still ends cancelled (before: it got ``ServerTimeoutError`` and ran on, its
    cancellation lost, as a shutting-down TaskGroup's would be)."""

    async def main() -> tuple[str, int]:
        server = Stalling("request")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=0.2, sock_read=0.3)
        async with (
            server.serving(),
            ClientSession(resolver=resolver_for(), policy=quick_policy(3), timeout=timeout) as s,
        ):
            loop = asyncio.get_running_loop()
            began = loop.time()
            task = asyncio.ensure_future(_call(s, f"http://127.0.0.1:{server.port}/"))
            # The loop is held from 0.45 s to 0.6 s: the caller's cancel (due at 0.48 s)
            # and outlast's cut (due at 0.5 s) then run in the same turn.
            loop.call_at(began + 0.45, time.sleep, 0.15)
            loop.call_at(began + 0.48, task.cancel)
            try:
                outcome = await task
            except asyncio.CancelledError:
                outcome = "cancelled"
            left = asyncio.current_task().cancelling()  # type: ignore[union-attr]
            return repr(outcome), left + task.cancelling()

    outcome, cancelling = asyncio.run(main())
    assert outcome == "'cancelled'"
    assert cancelling == 1  # the caller's one cancel request, not taken back


async def _always_503(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


#: The deadline overrun in the backoff, by the caller's timeout: with ``total`` aiohttp's
#: timer ends the call while outlast sleeps (``asyncio.TimeoutError``); without it
#: (sock_connect 0.5 + sock_read 0.5 s) the retry is cut before it is sent
#: (``aiohttp.ServerTimeoutError``).
OVERRUNS = {
    "total": (aiohttp.ClientTimeout(total=1.0), asyncio.TimeoutError),
    "sock_read": (
        aiohttp.ClientTimeout(total=None, sock_connect=0.5, sock_read=0.5),
        aiohttp.ServerTimeoutError,
    ),
}


@pytest.mark.parametrize(("timeout", "raised"), OVERRUNS.values(), ids=OVERRUNS.keys())
def test_a_deadline_passed_in_the_backoff_is_not_a_second_failure(
    resolver_for: Any, timeout: aiohttp.ClientTimeout, raised: type[BaseException]
) -> None:
    """The loop is held from 0.4 s to 1.1 s, so the 0.5 s backoff before a retry overruns
    the call's deadline (1 s). No attempt was running when it passed, and the retry never
    left: the one 503 is the call's only failure, so with ``failures=2`` the breaker
    stays closed (before: the cut was counted as a second failure, and one 503 opened
    it)."""
    policy = Policy(
        retry=Retry(attempts=2, base=0.5, cap=0.5),
        budget=None,
        breaker=CircuitBreaker(failures=2, reset=30, min_reset=30),
        classify_error=classify_error,
        classify_result=classify_result,
        uniform=lambda low, high: high,  # the full 0.5 s backoff
    )

    async def main() -> tuple[BaseException | int, int, str | None]:
        server = await asyncio.start_server(_always_503, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with ClientSession(resolver=resolver_for(), policy=policy, timeout=timeout) as s:
                loop = asyncio.get_running_loop()
                loop.call_at(loop.time() + 0.4, time.sleep, 0.7)
                outcome = await _call(s, f"http://127.0.0.1:{port}/")
        finally:
            server.close()
            await server.wait_closed()
        (state,) = [k for k in policy.snapshot().keys if k.key == f"http://127.0.0.1:{port}"]
        return outcome, state.failures, state.state

    outcome, failures, state = asyncio.run(main())
    assert isinstance(outcome, raised)
    assert (failures, state) == (1, "closed")


def test_a_call_that_waited_for_the_breaker_still_ends_by_its_deadline(resolver_for: Any) -> None:
    """Without ``total`` the deadline is connect + sock_read (here 3 s). A call that waits
    1.4 s for the open breaker's interval to end, then probes a backend that hangs, must
    still end by 3 s: its first attempt began late, so the deadline cuts it as it cuts a
    retry (before: it ran its full 3 s sock_read after the wait, 4.4 s in all)."""
    policy = Policy(
        retry=Retry(attempts=1),
        budget=None,
        breaker=CircuitBreaker(failures=1, reset=2.0, min_reset=2.0, max_wait=1.5),
        classify_error=classify_error,
        classify_result=classify_result,
    )

    async def main() -> tuple[BaseException | int, float, int]:
        server = Stalling("request")
        timeout = aiohttp.ClientTimeout(total=None, sock_read=3.0)
        async with (
            server.serving(),
            ClientSession(resolver=resolver_for(), policy=policy, timeout=timeout) as s,
        ):
            url = f"http://127.0.0.1:{server.port}/"
            tripped = await _call(s, url, timeout=aiohttp.ClientTimeout(sock_read=0.2))
            assert isinstance(tripped, aiohttp.SocketTimeoutError)
            await asyncio.sleep(0.6)  # 1.4 s of the 2 s interval left: within max_wait
            started = time.monotonic()
            outcome = await _call(s, url)
            return outcome, time.monotonic() - started, server.requests

    outcome, took, requests = asyncio.run(main())
    assert isinstance(outcome, aiohttp.ServerTimeoutError)
    assert requests == 2  # it waited and probed, rather than being refused
    assert 2.9 < took < 3.0 + MARGIN


def test_a_late_total_timeout_does_not_take_and_fail_the_probe(resolver_for: Any) -> None:
    """A call begun while the breaker was closed hangs in the TLS handshake; meanwhile the
    breaker opens (0.1 s) and its interval ends. When ``total`` ends that call at 1 s,
    its report is late, as any failure reported while open is: ignored (as it is when
    the timer ends a call waiting for headers). Before: the replay took the free probe
    slot and failed it, so the breaker reopened for 0.2 s with nothing probed."""
    policy = Policy(
        retry=Retry(attempts=1),
        budget=None,
        breaker=CircuitBreaker(failures=1, reset=2.0, min_reset=0.1),
        classify_error=classify_error,
        classify_result=classify_result,
    )

    async def main() -> tuple[BaseException | int, float]:
        server = Stalling("accept")  # never answers the client's TLS hello
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with (
            server.serving(),
            ClientSession(resolver=resolver_for(), policy=policy, timeout=timeout) as s,
        ):
            key = f"https://127.0.0.1:{server.port}"
            late = asyncio.ensure_future(_call(s, f"{key}/", ssl=False))
            await asyncio.sleep(0.05)
            breaker = policy.for_key(key)._guard.breaker  # type: ignore[union-attr]
            assert breaker is not None
            breaker.failed(0)  # another call's failure opens it, for 0.1 s
            assert policy.for_key(key).state == "open"
            outcome = await late
            return outcome, policy.for_key(key).retry_after()

    outcome, retry_after = asyncio.run(main())
    assert type(outcome) is asyncio.TimeoutError
    assert retry_after == 0.0  # the next caller probes at once
