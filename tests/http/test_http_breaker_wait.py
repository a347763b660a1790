"""Through ``outlast.Client`` / ``AsyncClient``: an open breaker near its reset waits.

A backend fails until its breaker opens, then heals. A request made while the breaker
is still open, with less than ``max_wait`` of the interval left, gets the healed
backend's 200 (it waited for the interval's end and probed) instead of
``CircuitOpenError``; a request whose httpx timeout leaves it too little time is
refused at once, as before. Sync, and async under asyncio and trio.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import httpx
import pytest
from loopback_http import Backend

import outlast
from outlast.http import AsyncTransport, CircuitOpenError, Transport
from outlast.testing import DNSServer

SLACK = 1.0  # seconds: a generous bound for a busy machine

pytest.importorskip("trio")


@pytest.fixture
def name(fault_dns: DNSServer, unique_name: Callable[[str], str]) -> str:
    host = unique_name("wait")
    fault_dns.set(host, ["127.0.0.1"])
    return host


def policy() -> outlast.Policy:
    """One attempt per call; the breaker opens on 2 failures for 0.6 s (max_wait 0.25)."""
    return outlast.Policy(
        retry=outlast.Retry(attempts=1),
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=0.6, min_reset=0.6),
        classify_error=outlast.http.classify_error,
        classify_result=outlast.http.classify_result,
    )


def test_a_request_near_the_reset_gets_the_healed_backends_answer(
    name: str, resolver: outlast.Resolver
) -> None:
    chosen = policy()
    with Backend() as server:
        server.status = 503
        url = f"http://{name}:{server.port}/"
        with httpx.Client(transport=Transport(resolver=resolver, policy=chosen)) as client:
            assert [client.get(url).status_code for _ in range(2)] == [503, 503]
            opened = time.monotonic()
            server.status = 200  # healed while the breaker is open
            hits = server.hits
            with pytest.raises(CircuitOpenError):  # 0.1 s allowed to wait: too little
                client.get(url, timeout=0.1)
            assert server.hits == hits
            time.sleep(max(0.0, opened + 0.4 - time.monotonic()))  # < 0.25 s left
            began = time.monotonic()
            response = client.get(url, timeout=5.0)
            assert response.status_code == 200  # not CircuitOpenError
            assert time.monotonic() - began < 0.3 + SLACK
            assert server.hits == hits + 1  # one probe, which closed the breaker
            assert client.get(url).status_code == 200


def test_an_async_request_near_the_reset_gets_the_healed_backends_answer(
    name: str, resolver: outlast.Resolver, backend_name: str
) -> None:
    chosen = policy()

    async def main(url: str, server: Backend) -> None:
        transport = AsyncTransport(resolver=resolver, policy=chosen)
        async with httpx.AsyncClient(transport=transport) as client:
            assert [(await client.get(url)).status_code for _ in range(2)] == [503, 503]
            opened = time.monotonic()
            server.status = 200
            with pytest.raises(CircuitOpenError):
                await client.get(url, timeout=0.1)
            await anyio.sleep(max(0.0, opened + 0.4 - time.monotonic()))
            response = await client.get(url, timeout=5.0)
            assert response.status_code == 200
            assert chosen.for_key(f"http://{name}:{server.port}").state == "closed"

    with Backend() as server:
        server.status = 503
        anyio.run(main, f"http://{name}:{server.port}/", server, backend=backend_name)
