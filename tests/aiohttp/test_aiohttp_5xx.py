"""5xx through ``outlast.aiohttp``: the rules of ``outlast.http``.

Cells (status x method) and the invariant: 500/502/503/504 are retried when the
request is safe (GET; a POST never twice); every 5xx but 501 and 505 counts against
the origin's breaker, so a backend answering 500 to every call opens it (before, 500
and the 5xx outside 502-504 were taken as successes: the breaker never opened). A
proxy that fails is neutral: neither the target's failure nor its success.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp_helpers import quick_policy
from loopback_http import Backend

from outlast import Resolver
from outlast.aiohttp import CircuitOpenError, ClientSession
from outlast.testing import DNSServer


@pytest.fixture
def name(fault_dns: DNSServer, unique_name: Callable[[str], str]) -> str:
    made = unique_name("fivexx")
    fault_dns.set(made, ["127.0.0.1"], ttl=30)
    return made


async def _statuses(session_args: dict[str, object], method: str, url: str, n: int) -> list[int]:
    out: list[int] = []
    async with ClientSession(**session_args) as session:  # type: ignore[arg-type]
        for _ in range(n):
            try:
                async with session.request(method, url, data=b"x") as response:
                    out.append(response.status)
            except CircuitOpenError:
                out.append(-1)
    return out


@pytest.mark.parametrize("status", [500, 507])
def test_a_backend_failing_every_call_opens_the_breaker_without_repeating_a_post(
    name: str, resolver_for: Callable[..., Resolver], status: int
) -> None:
    args = {"resolver": resolver_for(), "policy": quick_policy(breaker=True)}
    with Backend() as server:
        server.status = status
        url = f"http://{name}:{server.port}/"
        assert asyncio.run(_statuses(args, "POST", url, 3)) == [status, status, -1]
        assert server.hits == 2  # a POST answered 5xx is not sent again; then refused


def test_a_500_to_a_get_is_retried(name: str, resolver_for: Callable[..., Resolver]) -> None:
    args = {"resolver": resolver_for(), "policy": quick_policy()}
    with Backend() as server:
        server.script.extend([500])
        assert asyncio.run(_statuses(args, "GET", f"http://{name}:{server.port}/", 1)) == [200]
        assert server.hits == 2


@pytest.mark.parametrize("status", [501, 505])
def test_501_and_505_are_not_held_against_the_backend(
    name: str, resolver_for: Callable[..., Resolver], status: int
) -> None:
    args = {"resolver": resolver_for(), "policy": quick_policy(breaker=True)}
    with Backend() as server:
        server.status = status
        url = f"http://{name}:{server.port}/"
        assert asyncio.run(_statuses(args, "GET", url, 4)) == [status] * 4
        assert server.hits == 4


def test_a_proxy_failure_neither_counts_nor_resets_the_targets_count(
    name: str, resolver_for: Callable[..., Resolver]
) -> None:
    # failures=2: 500, (proxy down), 500 is two failures in a row for the target; the
    # proxy's error says nothing about it (before, it was taken as the target's success).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def main(url: str) -> list[object]:
        out: list[object] = []
        session = ClientSession(resolver=resolver_for(), policy=quick_policy(breaker=True))
        async with session:
            for proxy in (None, dead_proxy, None, None):
                try:
                    async with session.post(url, data=b"x", proxy=proxy) as response:
                        out.append(response.status)
                except CircuitOpenError:
                    out.append("open")
                except aiohttp.ClientProxyConnectionError:
                    out.append("proxy")
        return out

    with Backend() as server:
        server.status = 500
        assert asyncio.run(main(f"http://{name}:{server.port}/")) == [500, "proxy", 500, "open"]
        assert server.hits == 2
