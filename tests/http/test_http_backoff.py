"""A failed response is freed when its retry is decided, not when the next attempt starts.

Every test runs on one allowed connection (``max_connections=1``): a response left
open would keep the pool's only connection, and the next request would fail with
``PoolTimeout``. The backoff is the policy's injected ``sleep`` where a test needs to
act inside it, the real one where cancellation must land in it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from loopback_http import Backend

import outlast
from outlast import Resolver
from outlast.http import (
    AsyncTransport,
    CircuitOpenError,
    Transport,
    classify_error,
    classify_result,
)
from outlast.testing import DNSServer, force_open

ONE = httpx.Limits(max_connections=1)
POOL_TIMEOUT = httpx.Timeout(5.0, pool=0.5)


def policy_sleeping(
    sleep: Callable[[float], None], breaker: outlast.CircuitBreaker | None = None
) -> outlast.Policy:
    return outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.01, cap=5.0),
        budget=None,
        breaker=breaker,
        classify_error=classify_error,
        classify_result=classify_result,
        sleep=sleep,
    )


@pytest.fixture
def name(fault_dns: DNSServer, unique_name: Callable[[str], str]) -> str:
    host = unique_name("backoff")
    fault_dns.set(host, ["127.0.0.1"])
    return host


def test_the_failed_response_is_closed_before_the_backoff(name: str, resolver: Resolver) -> None:
    during: list[int] = []
    client: httpx.Client

    def sleep(seconds: float) -> None:
        # Inside the backoff, the pool's only connection must be free again.
        during.append(client.get(f"http://{name}:{server.port}/during").status_code)

    transport = Transport(resolver=resolver, policy=policy_sleeping(sleep), limits=ONE)
    with Backend() as server, httpx.Client(transport=transport, timeout=POOL_TIMEOUT) as client:
        server.script.append(503)
        response = client.get(f"http://{name}:{server.port}/")
    assert during == [200]
    assert response.status_code == 200
    assert server.hits == 3  # the 503, the request made during the backoff, the retry


def test_keyboard_interrupt_during_the_backoff_frees_the_connection(
    name: str, resolver: Resolver
) -> None:
    def sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    transport = Transport(resolver=resolver, policy=policy_sleeping(sleep), limits=ONE)
    with Backend() as server, httpx.Client(transport=transport, timeout=POOL_TIMEOUT) as client:
        server.script.append(503)
        with pytest.raises(KeyboardInterrupt):
            client.get(f"http://{name}:{server.port}/")
        after = client.get(f"http://{name}:{server.port}/")
    assert after.status_code == 200
    assert server.hits == 2


def test_async_cancelled_during_the_backoff_frees_the_connection(
    name: str, resolver: Resolver
) -> None:
    policy = outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.01, cap=5.0),
        budget=None,
        breaker=None,
        classify_error=classify_error,
        classify_result=classify_result,
    )

    async def main(port: int) -> int:
        transport = AsyncTransport(resolver=resolver, policy=policy, limits=ONE)
        async with httpx.AsyncClient(transport=transport, timeout=POOL_TIMEOUT) as client:
            url = f"http://{name}:{port}/"
            with pytest.raises(asyncio.TimeoutError):  # cancelled in the 3 s Retry-After
                await asyncio.wait_for(client.get(url), 0.3)
            return (await client.get(url)).status_code

    with Backend() as server:
        server.script.append(503)
        server.retry_after = "3"
        status = asyncio.run(main(server.port))
    assert status == 200
    assert server.hits == 2


def test_a_breaker_opened_during_the_backoff_raises_instead_of_a_closed_response(
    name: str, resolver: Resolver
) -> None:
    # The response was closed for a retry the breaker then refused: returning it would
    # hand the caller a response whose body cannot be read.
    holder: list[object] = []

    def sleep(seconds: float) -> None:
        holder.append(force_open(policy.for_key(f"http://{name}:{server.port}")))

    policy = policy_sleeping(
        sleep, breaker=outlast.CircuitBreaker(failures=5, reset=60, min_reset=60)
    )
    transport = Transport(resolver=resolver, policy=policy, limits=ONE)
    with Backend() as server, httpx.Client(transport=transport, timeout=POOL_TIMEOUT) as client:
        server.status = 503
        with pytest.raises(CircuitOpenError) as info:
            client.get(f"http://{name}:{server.port}/")
    assert server.hits == 1
    assert info.value.name == f"http://{name}:{server.port}"
    assert 0 < info.value.retry_after <= 60
