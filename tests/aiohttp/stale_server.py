"""A loopback server that closes kept-alive connections as they are reused, and the
policy the stale-connection tests run under (tests/aiohttp/test_aiohttp_stale.py,
test_aiohttp_breakers.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from outlast import CircuitBreaker, Policy, Retry, RetryBudget
from outlast.aiohttp import classify_error, classify_result

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def stale_policy(retry: Retry | None, slept: list[float] | None = None) -> Policy:
    """Retries as given, a budget, and a breaker that five failures in a row open; the
    backoffs it sleeps are added to ``slept`` when it is given."""

    async def asleep(seconds: float) -> None:
        if slept is not None:
            slept.append(seconds)
        await asyncio.sleep(seconds)

    return Policy(
        retry=retry,
        budget=RetryBudget(ratio=0.5, floor=1.0, window=10),
        breaker=CircuitBreaker(failures=5, reset=30, min_reset=30, max_wait=0),
        classify_error=classify_error,
        classify_result=classify_result,
        asleep=asleep,
    )


class Server:
    """A loopback HTTP/1.1 server answering ``answers`` requests on each connection, then
    closing it on reading the next one's head (a kept-alive connection found closed).
    Reads each body whole (``content-length``), answers ``Expect: 100-continue``."""

    def __init__(self, answers: int = 1) -> None:
        self.answers = answers
        self.hits = 0  # request heads read
        self.bodies: list[bytes] = []  # bodies of the requests answered
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(self.answers):
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                self.hits += 1
                length = 0
                for line in head.split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if b"expect: 100-continue" in head:
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.bodies.append(await reader.readexactly(length))
                writer.write(OK)
                await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
            self.hits += 1  # read, then the connection is closed unanswered
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Server]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()


def counted(policy: Policy, port: int) -> tuple[int | None, int | None]:
    """The origin's failures in a row and retries in the budget's window."""
    for state in policy.snapshot().keys:
        if state.key == f"http://127.0.0.1:{port}":
            return state.failures, state.retries
    return None, None
