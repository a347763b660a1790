"""The async faces under both anyio backends: asyncio and trio, as httpx supports.

Requests to names and to IP literals, timeouts, retries, cancellation and closing, for
``outlast.AsyncClient``, and the resolver's and policy's own async faces. Every error a
caller sees is the one plain httpx would raise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable

import anyio
import httpx
import pytest
from loopback_http import STALL, Backend

import outlast
from outlast.testing import DNSServer

pytest.importorskip("trio")


@pytest.fixture
def name(fault_dns: DNSServer, unique_name: Callable[[str], str]) -> str:
    made = unique_name("anyio")
    fault_dns.set(made, ["127.0.0.1"])
    return made


def fast_policy() -> outlast.Policy:
    from outlast.http import classify_error, classify_result

    return outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.01, cap=0.02),
        budget=None,
        classify_error=classify_error,
        classify_result=classify_result,
    )


def test_requests_to_a_name_and_to_an_ip_literal(
    backend_name: str, resolver: outlast.Resolver, name: str
) -> None:
    async def main() -> list[int]:
        with Backend() as server:
            async with outlast.AsyncClient(resolver=resolver) as client:
                by_name = await client.get(f"http://{name}:{server.port}/")
                by_ip = await client.get(f"http://127.0.0.1:{server.port}/")
            return [by_name.status_code, by_ip.status_code]

    assert anyio.run(main, backend=backend_name) == [200, 200]


def test_the_default_client_resolves_names_and_closes(
    backend_name: str,
    fault_dns: DNSServer,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTLAST_DNS_PROVIDERS", fault_dns.provider)
    monkeypatch.delenv("OUTLAST_DISABLE", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)

    async def main() -> int:
        with Backend() as server:
            async with outlast.AsyncClient() as client:
                response = await client.get(f"http://{name}:{server.port}/")
            await client.aclose()  # closing twice is fine
            return response.status_code

    assert anyio.run(main, backend=backend_name) == 200


def test_a_retried_request_that_times_out_raises_httpx_read_timeout(
    backend_name: str, resolver: outlast.Resolver, name: str
) -> None:
    async def main() -> None:
        with Backend() as server:
            server.script.extend([503, STALL, STALL])
            async with outlast.AsyncClient(
                resolver=resolver, policy=fast_policy(), timeout=0.3
            ) as client:
                await client.get(f"http://{name}:{server.port}/")

    with pytest.raises(httpx.ReadTimeout):
        anyio.run(main, backend=backend_name)


def test_retries_then_success(backend_name: str, resolver: outlast.Resolver, name: str) -> None:
    async def main() -> tuple[int, int]:
        with Backend() as server:
            server.script.extend([503, 503])
            async with outlast.AsyncClient(resolver=resolver, policy=fast_policy()) as client:
                response = await client.get(f"http://{name}:{server.port}/")
            return response.status_code, server.hits

    assert anyio.run(main, backend=backend_name) == (200, 3)


def test_a_cancelled_request_leaves_the_client_usable(
    backend_name: str, resolver: outlast.Resolver, name: str
) -> None:
    async def main() -> tuple[bool, int]:
        with Backend() as server:
            server.script.append(STALL)
            async with outlast.AsyncClient(resolver=resolver, policy=fast_policy()) as client:
                with anyio.move_on_after(0.3) as scope:
                    await client.get(f"http://{name}:{server.port}/")
                again = await client.get(f"http://{name}:{server.port}/")
            return scope.cancelled_caught, again.status_code

    assert anyio.run(main, backend=backend_name) == (True, 200)


def test_aresolve_waits_for_a_cold_name_and_cancelling_a_waiter_spares_the_lookup(
    backend_name: str, fault_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    slow = unique_name("slow")
    fault_dns.set(slow, ["127.0.0.2"])
    fault_dns.delay(0.3, slow)

    async def main() -> tuple[str, ...]:
        async with outlast.Resolver(providers=[fault_dns.provider], timeout=2) as resolver:
            with anyio.move_on_after(0.05):
                await resolver.aresolve(slow)  # cancelled while the lookup runs on
            answer = await resolver.aresolve(slow)
            literal = await resolver.aresolve("::1")
            return (*answer.addresses, *literal.addresses)

    assert anyio.run(main, backend=backend_name) == ("127.0.0.2", "::1")


def test_policy_acall_retries_with_anyio_sleeps(backend_name: str) -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("refused")
        return "ok"

    policy = outlast.Policy(retry=outlast.Retry(attempts=3, base=0.01, cap=0.02), budget=None)
    assert anyio.run(policy.acall, flaky, backend=backend_name) == "ok"
    assert len(calls) == 3


def test_aclose_does_not_use_the_event_loops_default_executor(fault_dns: DNSServer) -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        busy = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        loop.set_default_executor(busy)
        blocker = loop.run_in_executor(None, time.sleep, 3)
        resolver = outlast.Resolver(providers=[fault_dns.provider])
        await resolver.aresolve("127.0.0.1")
        started = time.monotonic()
        await resolver.aclose()
        took = time.monotonic() - started
        await blocker
        await loop.shutdown_default_executor()
        other = outlast.Resolver(providers=[fault_dns.provider])
        started = time.monotonic()
        await other.aclose()  # after the executor is shut down
        return took, time.monotonic() - started

    took, after_shutdown = asyncio.run(main())
    assert took < 2.5  # the default executor was busy for 3 s
    assert after_shutdown < 2.5
