"""5xx through ``outlast.aiohttp``: the rules of ``outlast.http``.

Cells (status x method) and the invariant: 500/502/503/504 are retried when the
request is safe (GET; a POST never twice); every 5xx but 501 and 505 counts against
the origin's breaker, so a backend answering 500 to every call opens it (before, 500
and the 5xx outside 502-504 were taken as successes: the breaker never opened).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

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
