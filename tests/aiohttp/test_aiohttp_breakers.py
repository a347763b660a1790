"""Inputs that broke the middleware's own first attempt and its re-send on a stale connection.

The hot path (``Policy._gate``: the middleware makes a call's first attempt itself while
the breaker is closed) must end every call as ``Policy.acall`` would, and the re-send on a
kept-alive connection the server closed as it was reused (``stale``) must cost a request
safe to repeat nothing, as aiohttp's own once-only re-send (which outlast turns off) does.

Cells: the path (hot: no deadline or ``total``; watched: ``sock_read`` alone) x the body
(none, bytes, a file, ``BytesIO``, ``Expect: 100-continue``) x who sends the request
again (the re-send, an outer middleware of the user's calling the handler twice).
Invariant: a request safe to repeat that meets a kept-alive connection closed as it was
reused succeeds where plain aiohttp succeeds, with nothing counted against the origin,
and each body reaches the server whole.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stale_server import OK, Server, counted, stale_policy

from outlast import CircuitBreaker, Policy, Resolver, Retry, RetryBudget
from outlast.aiohttp import ClientSession, classify_error, classify_result
from outlast.policy import Decision, Outcome

#: The session's timeout picks the path: none or ``total``, the middleware makes the first
#: attempt itself; ``sock_read`` alone, each attempt is watched for the call's deadline.
TIMEOUTS = {
    "no deadline": aiohttp.ClientTimeout(total=None),
    "total": aiohttp.ClientTimeout(total=10),
    "sock_read": aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=5),
}

POLICIES = {
    "retry=None": None,
    "3 attempts": Retry(attempts=3, base=0.3, cap=0.3),
}


async def _send(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> int | str:
    try:
        async with session.request(method, url, **kw) as response:
            await response.read()
            return response.status
    except aiohttp.ClientError as exc:
        return type(exc).__name__


def _run(
    make: Callable[[], aiohttp.ClientSession],
    calls: Callable[[aiohttp.ClientSession, str], Awaitable[list[int | str]]],
) -> tuple[list[int | str], Server]:
    server = Server()

    async def main() -> list[int | str]:
        async with server.serving(), make() as session:
            return await calls(session, f"http://127.0.0.1:{server.port}/")

    return asyncio.run(main()), server


# -- an outer middleware sending the request twice ----------------------------------------


async def _twice(
    request: aiohttp.ClientRequest,
    handler: Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]],
) -> aiohttp.ClientResponse:
    """A user's middleware that sends a request, reads the answer, then sends it again
    (the shape of aiohttp's documented token-refresh and retry middlewares)."""
    first = await handler(request)
    await first.read()
    first.release()  # the connection goes back to the pool, kept alive
    return await handler(request)


@pytest.mark.parametrize("timeout", TIMEOUTS.values(), ids=TIMEOUTS.keys())
@pytest.mark.parametrize("retry", POLICIES.values(), ids=POLICIES.keys())
def test_a_second_pass_through_the_middleware_re_sends_on_a_stale_connection(
    resolver_for: Callable[..., Resolver], retry: Retry | None, timeout: aiohttp.ClientTimeout
) -> None:
    """The first pass opened a connection; the second reuses it, found closed. The mark
    the first pass left (``outlast_opened``) must not make the second look like one that
    opened its connection: it is re-sent at once, uncounted, with no backoff."""
    slept: list[float] = []
    policy = stale_policy(retry, slept)

    def make() -> aiohttp.ClientSession:
        return ClientSession(
            resolver=resolver_for(), policy=policy, middlewares=(_twice,), timeout=timeout
        )

    async def calls(session: aiohttp.ClientSession, url: str) -> list[int | str]:
        return [await _send(session, "GET", url)]

    seen, server = _run(make, calls)
    assert seen == [200]
    assert server.hits == 3  # the first pass, the stale one, its re-send on a new connection
    assert counted(policy, server.port) == (0, 0)  # no failure, no retry: nothing counted
    assert slept == []  # no backoff


# -- bodies aiohttp can send again ------------------------------------------------------


BODIES: dict[str, Callable[[Path], Any]] = {
    "bytes": lambda path: b"x" * 1000,
    "file": lambda path: path.open("rb"),
    "BytesIO": lambda path: io.BytesIO(b"x" * 1000),
}


@pytest.mark.parametrize("timeout", TIMEOUTS.values(), ids=TIMEOUTS.keys())
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_a_put_with_a_body_aiohttp_can_replay_is_re_sent_whole_on_a_stale_connection(
    resolver_for: Callable[..., Resolver],
    tmp_path: Path,
    body: Callable[[Path], Any],
    timeout: aiohttp.ClientTimeout,
) -> None:
    """Plain aiohttp re-sends an idempotent request whose body it can rewind (a file, a
    ``BytesIO``): outlast, which turns that re-send off, must not fail it instead."""
    path = tmp_path / "upload"
    path.write_bytes(b"x" * 1000)
    opened: list[Any] = []

    def data() -> Any:
        made = body(path)
        opened.append(made)
        return made

    async def calls(session: aiohttp.ClientSession, url: str) -> list[int | str]:
        return [await _send(session, "PUT", url, data=data()) for _ in range(3)]

    def plain() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=timeout)

    policy = stale_policy(None)

    def ours() -> aiohttp.ClientSession:
        return ClientSession(resolver=resolver_for(), policy=policy, timeout=timeout)

    try:
        expected, plain_server = _run(plain, calls)
        seen, server = _run(ours, calls)
    finally:
        for one in opened:
            if hasattr(one, "close"):
                one.close()
    assert expected == [200, 200, 200]  # aiohttp's own re-send on each reused connection
    assert seen == expected
    assert server.bodies == plain_server.bodies == [b"x" * 1000] * 3  # each sent whole
    assert counted(policy, server.port) == (0, 0)


# -- Expect: 100-continue -----------------------------------------------------------------


@pytest.mark.parametrize("timeout", TIMEOUTS.values(), ids=TIMEOUTS.keys())
def test_an_expect_100_continue_put_is_re_sent_on_a_stale_connection(
    resolver_for: Callable[..., Resolver], timeout: aiohttp.ClientTimeout
) -> None:
    """The failed send cancels the request's wait for ``100 Continue``: a re-send of the
    same request must wait for its own, not fail on the spent one."""

    async def calls(session: aiohttp.ClientSession, url: str) -> list[int | str]:
        return [await _send(session, "PUT", url, data=b"abc", expect100=True) for _ in range(2)]

    policy = stale_policy(None)

    def ours() -> aiohttp.ClientSession:
        return ClientSession(resolver=resolver_for(), policy=policy, timeout=timeout)

    seen, server = _run(ours, calls)
    assert seen == [200, 200]
    assert server.bodies == [b"abc", b"abc"]
    assert counted(policy, server.port) == (0, 0)


class _DropsFirst:
    """Drops its first connection on reading the request's head (the destination's
    failure: the policy retries it), answers the others, ``100 Continue`` first."""

    def __init__(self) -> None:
        self.connections = 0
        self.bodies: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            if first:
                return
            if b"expect: 100-continue" in head:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.bodies.append(await reader.readexactly(3))
            writer.write(OK)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("timeout", TIMEOUTS.values(), ids=TIMEOUTS.keys())
def test_a_retry_of_an_expect_100_continue_put_waits_for_its_own_100(
    resolver_for: Callable[..., Resolver], timeout: aiohttp.ClientTimeout
) -> None:
    """Each retry sent the same request with the first send's wait for ``100 Continue``
    (cancelled with it): the writer gave up at once and the connection was closed with
    the body unsent, so every retry failed too, each counted against the destination."""
    destination = _DropsFirst()
    policy = stale_policy(Retry(attempts=3, base=0.01, cap=0.01))

    async def main() -> int | str:
        server = await asyncio.start_server(destination.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            url = f"http://127.0.0.1:{port}/"
            async with ClientSession(resolver=resolver_for(), policy=policy, timeout=timeout) as s:
                return await _send(s, "PUT", url, data=b"abc", expect100=True)
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) == 200
    assert destination.connections == 2  # the dropped one, then one retry
    assert destination.bodies == [b"abc"]


# -- the hot path against acall, on one script -------------------------------------------


class _Scripted:
    """Answers each request head with the next step of ``script`` (then 200): a status,
    or ``drop`` (the connection is closed unanswered). Connections are kept alive."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.seen: list[str] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                step = self.script.pop(0) if self.script else "200"
                self.seen.append(step)
                if step == "drop":
                    return
                extra = "retry-after: 0\r\n" if step in ("429", "503") else ""
                writer.write(f"HTTP/1.1 {step} X\r\n{extra}content-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _differential_policy(classify: Any) -> Policy:
    return Policy(
        retry=Retry(attempts=3, base=0.001, cap=0.002),
        budget=RetryBudget(ratio=0.3, floor=0.5, window=30),
        breaker=CircuitBreaker(failures=3, reset=60, min_reset=60, max_wait=0),
        classify_error=classify_error,
        classify_result=classify,
    )


def _through(
    resolver: Resolver, classify: Any, script: list[str], methods: list[str]
) -> tuple[list[int | str], list[str], Any]:
    policy = _differential_policy(classify)
    destination = _Scripted(script)

    async def main() -> tuple[list[int | str], int]:
        server = await asyncio.start_server(destination.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with ClientSession(resolver=resolver, policy=policy) as session:
                seen = []
                for method in methods:
                    try:
                        seen.append(await _send(session, method, f"http://127.0.0.1:{port}/"))
                    except aiohttp.ClientError as exc:  # CircuitOpenError among them
                        seen.append(type(exc).__name__)
                return seen, port
        finally:
            server.close()
            await server.wait_closed()

    seen, port = asyncio.run(main())
    (state,) = [k for k in policy.snapshot().keys if k.key == f"http://127.0.0.1:{port}"]
    return seen, destination.seen, (state.state, state.failures, state.calls, state.retries)


def _aiohttps_own_classifier_wrapped(outcome: Outcome, /) -> Decision:
    """aiohttp's own result classifier, but not it: the session takes ``acall``'s path."""
    return classify_result(outcome)


STEPS = st.sampled_from(["200", "404", "429", "500", "501", "503", "drop"])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    script=st.lists(STEPS, max_size=14),
    methods=st.lists(st.sampled_from(["GET", "GET", "POST"]), min_size=1, max_size=6),
)
def test_the_hot_path_ends_every_call_as_acall_does(
    resolver_for: Callable[..., Resolver], script: list[str], methods: list[str]
) -> None:
    """The same destination script and calls through a session whose first attempts the
    middleware makes (aiohttp's classifier) and one whose calls all go through ``acall``
    (the same verdicts from a classifier that is not aiohttp's own): the same answers,
    the same requests reaching the destination, the same breaker and budget after."""
    resolver = resolver_for()
    hot = _through(resolver, classify_result, script, methods)
    full = _through(resolver, _aiohttps_own_classifier_wrapped, script, methods)
    assert hot == full


def test_total_ending_a_re_send_as_it_waits_for_the_body_is_judged_on_both_paths(
    resolver_for: Callable[..., Resolver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiohttp's ``total`` fires while the re-send waits for the failed send's body
    writer (made slow here): the call is judged the destination's failure, on the hot
    path as through ``acall``, whose attempt the wait is part of."""

    async def slow_close(self: aiohttp.ClientRequest) -> None:
        await asyncio.sleep(5)

    monkeypatch.setattr(aiohttp.ClientRequest, "close", slow_close)

    def through(classify: Any) -> tuple[list[int | str], int | None]:
        policy = _differential_policy(classify)
        server = Server()

        async def main() -> list[int | str]:
            timeout = aiohttp.ClientTimeout(total=0.5)
            async with (
                server.serving(),
                ClientSession(resolver=resolver_for(), policy=policy, timeout=timeout) as s,
            ):
                url = f"http://127.0.0.1:{server.port}/"
                seen: list[int | str] = []
                for _ in range(2):  # the second finds its kept-alive connection closed
                    try:
                        seen.append(await _send(s, "PUT", url, data=b"abc"))
                    except asyncio.TimeoutError:
                        seen.append("TimeoutError")
                return seen

        seen = asyncio.run(main())
        return seen, counted(policy, server.port)[0]

    full = through(_aiohttps_own_classifier_wrapped)
    assert full == ([200, "TimeoutError"], 1)  # acall: the destination's failure
    assert through(classify_result) == full


class _DigestGuarded:
    """Answers one request per connection, then closes it on reading the next head: a
    request without ``Authorization`` gets a digest challenge (401), one with it 200."""

    CHALLENGE = (
        b"HTTP/1.1 401 Unauthorized\r\n"
        b'www-authenticate: Digest realm="r", nonce="abc", qop="auth", algorithm=MD5\r\n'
        b"content-length: 0\r\n\r\n"
    )

    def __init__(self) -> None:
        self.heads = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            self.heads += 1
            writer.write(OK if b"authorization:" in head else self.CHALLENGE)
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
            self.heads += 1  # read, then the connection is closed unanswered
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("timeout", TIMEOUTS.values(), ids=TIMEOUTS.keys())
def test_digest_auth_answering_a_challenge_on_a_stale_connection_is_re_sent(
    resolver_for: Callable[..., Resolver], timeout: aiohttp.ClientTimeout
) -> None:
    """aiohttp's own ``DigestAuthMiddleware`` sends the request again, with credentials,
    after a 401: on the kept-alive connection the challenge came on, which the server
    has closed. That second pass is re-sent at once, as a first would be."""
    destination = _DigestGuarded()
    policy = stale_policy(None)

    async def main() -> int | str:
        server = await asyncio.start_server(destination.serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        digest = aiohttp.DigestAuthMiddleware("user", "secret")
        try:
            async with ClientSession(
                resolver=resolver_for(), policy=policy, timeout=timeout, middlewares=(digest,)
            ) as session:
                return await _send(session, "GET", f"http://127.0.0.1:{port}/")
        finally:
            server.close()
            await server.wait_closed()

    assert asyncio.run(main()) == 200
    assert destination.heads == 3  # the challenged one, the stale one, its re-send
