"""The success path of a kept-alive aiohttp request stays cheap, and its shortcuts exact.

The middleware keeps a route per origin and deadline (the policy's view, checked
against the registry instead of asking ``for_key`` again), and makes a call's first
attempt itself while the breaker is closed and the classifier is aiohttp's own
(``Policy._gate``): only an error or a status that may be retried goes to the policy.
Each shortcut is checked against what it replaces: the registry's eviction and recency,
a custom classifier (which sees every response), and an open breaker (which refuses
through the policy). The cost is counted in Python calls per request (``sys.setprofile``),
the same on any machine: outlast's over plain aiohttp's on a kept-alive connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from calls import counting
from loopback_http import Backend

import outlast
from outlast import Resolver
from outlast.aiohttp import CircuitOpenError, ClientSession, classify_error, classify_result
from outlast.policy import Decision, Outcome
from outlast.testing import DNSServer

#: Python calls (frames and C functions) one kept-alive GET through
#: ``outlast.aiohttp.ClientSession`` may make beyond plain aiohttp's: 16 once the first
#: attempt was made in the middleware and the breaker's state and count were plain
#: attributes (28 through ``acall``, which this bound rules out).
EXTRA_CALLS_ALLOWED = 22


async def _calls_per_request(session: aiohttp.ClientSession, url: str, n: int = 100) -> float:
    async with session.get(url) as response:  # warm: resolve, connect
        assert response.status == 200
        await response.read()
    with counting() as count:
        for _ in range(n):
            async with session.get(url) as response:
                await response.read()
    return count[0] / n


def test_a_kept_alive_request_costs_few_calls_over_plain_aiohttp(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("hot")
    fault_dns.set(name, ["127.0.0.1"])

    async def main(port: int) -> tuple[float, float]:
        resolver = resolver_for()
        url = f"http://{name}:{port}/"  # the same name on both sides (cookie filtering)
        connector = aiohttp.TCPConnector(resolver=outlast.aiohttp.Resolver(resolver))
        async with aiohttp.ClientSession(connector=connector) as plain:
            baseline = await _calls_per_request(plain, url)
        async with ClientSession(resolver=resolver) as ours:
            calls = await _calls_per_request(ours, url)
        return baseline, calls

    with Backend() as server:
        baseline, calls = asyncio.run(main(server.port))
    assert calls - baseline <= EXTRA_CALLS_ALLOWED, (calls, baseline)


# -- the route per origin ----------------------------------------------------------------


def _policy(**options: Any) -> outlast.Policy:
    defaults: dict[str, Any] = {
        "retry": None,
        "budget": None,
        "breaker": outlast.CircuitBreaker(failures=5, reset=60, min_reset=60, max_wait=0),
        "classify_error": classify_error,
        "classify_result": classify_result,
    }
    return outlast.Policy(**{**defaults, **options})


def _failures(policy: outlast.Policy, key: str) -> int | None:
    for state in policy.snapshot().keys:
        if state.key == key:
            return state.failures
    return None


async def _get(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url) as response:
            await response.read()
            return response.status
    except CircuitOpenError:
        return -1


def _names(fault_dns: DNSServer, unique_name: Callable[[str], str], *tags: str) -> list[str]:
    made = [unique_name(tag) for tag in tags]
    for name in made:
        fault_dns.set(name, ["127.0.0.1"])
    return made


def test_a_route_follows_the_registry_when_its_origin_is_evicted(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    a, b = _names(fault_dns, unique_name, "evict-a", "evict-b")
    policy = _policy(max_keys=1)

    async def main(port: int) -> list[int | None]:
        seen: list[int | None] = []
        origin_a = f"http://{a}:{port}"
        async with ClientSession(resolver=resolver_for(), policy=policy) as session:
            await _get(session, f"{origin_a}/")
            seen.append(_failures(policy, origin_a))
            await _get(session, f"http://{b}:{port}/")  # evicts a's key (max_keys=1)
            seen.append(_failures(policy, origin_a))
            await _get(session, f"{origin_a}/")  # counted by a guard made afresh
            seen.append(_failures(policy, origin_a))
        return seen

    with Backend() as server:
        server.status = 500  # counted against the origin's breaker
        assert asyncio.run(main(server.port)) == [1, None, 1]


def test_a_route_touches_its_key_so_a_busy_origin_is_not_evicted(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    a, b, c = _names(fault_dns, unique_name, "lru-a", "lru-b", "lru-c")
    policy = _policy(max_keys=2)

    async def main(port: int) -> list[int | None]:
        origin = {name: f"http://{name}:{port}" for name in (a, b, c)}
        async with ClientSession(resolver=resolver_for(), policy=policy) as session:
            for name in (a, b, a, c):  # a was used after b: c evicts b
                await _get(session, f"{origin[name]}/")
        return [_failures(policy, origin[name]) for name in (a, b, c)]

    with Backend() as server:
        server.status = 500
        assert asyncio.run(main(server.port)) == [2, None, 1]


def test_a_healthy_response_resets_the_count_on_the_hot_path(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    (name,) = _names(fault_dns, unique_name, "reset")
    policy = _policy(breaker=outlast.CircuitBreaker(failures=2, reset=60, min_reset=60, max_wait=0))

    async def main(port: int) -> list[int]:
        url = f"http://{name}:{port}/"
        async with ClientSession(resolver=resolver_for(), policy=policy) as session:
            return [await _get(session, url) for _ in range(6)]

    with Backend() as server:
        server.script.extend([500, 200, 500, 200, 500, 500])  # never two in a row until the end
        assert asyncio.run(main(server.port)) == [500, 200, 500, 200, 500, 500]
        assert policy.for_key(f"http://{name}:{server.port}").state == "open"
        assert server.hits == 6


def test_an_open_breaker_still_refuses_through_the_policy(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    (name,) = _names(fault_dns, unique_name, "open")
    policy = _policy(breaker=outlast.CircuitBreaker(failures=1, reset=60, min_reset=60, max_wait=0))

    async def main(port: int) -> list[int]:
        url = f"http://{name}:{port}/"
        async with ClientSession(resolver=resolver_for(), policy=policy) as session:
            return [await _get(session, url) for _ in range(3)]

    with Backend() as server:
        server.status = 503
        assert asyncio.run(main(server.port)) == [503, -1, -1]
        assert server.hits == 1


def test_a_custom_classifier_sees_every_response(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    """A classifier of the user's is asked about a 200 too (the hot path's shortcut is
    for aiohttp's own classifier only): here it retries the first 200 of each call."""
    (name,) = _names(fault_dns, unique_name, "custom")
    seen: list[int] = []

    def retry_the_first(outcome: Outcome, /) -> Decision:
        if outcome.error is not None:
            return classify_error(outcome)
        seen.append(outcome.result.status)
        return Decision(retry=outcome.attempt == 1)

    policy = _policy(
        retry=outlast.Retry(attempts=2, base=0.001, cap=0.002), classify_result=retry_the_first
    )

    async def main(port: int) -> int:
        async with ClientSession(resolver=resolver_for(), policy=policy) as session:
            return await _get(session, f"http://{name}:{port}/")

    with Backend() as server:
        assert asyncio.run(main(server.port)) == 200
        assert server.hits == 2
    assert seen == [200, 200]
