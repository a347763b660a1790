"""What a caller sees when no address can be found: httpx's errors, with the reason chained."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

import outlast
from outlast import ResolveError, Resolver
from outlast.http import AsyncTransport, Transport
from outlast.testing import DNSServer


def fetch(mode: str, resolver: Resolver, url: str) -> BaseException:
    policy = outlast.Policy(retry=None, budget=None, breaker=None)
    if mode == "sync":
        with httpx.Client(transport=Transport(resolver=resolver, policy=policy)) as client:
            with pytest.raises(httpx.ConnectError) as info:
                client.get(url)
            return info.value

    async def main() -> BaseException:
        transport = AsyncTransport(resolver=resolver, policy=policy)
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(url)
            return info.value

    return asyncio.run(main())


def causes(error: BaseException) -> list[BaseException]:
    chain = []
    link: BaseException | None = error
    while link is not None:
        chain.append(link)
        link = link.__cause__
    return chain


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_resolve_error_is_in_the_cause_chain(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    mode: str,
) -> None:
    host = unique_name("gone")
    fault_dns.nxdomain(host)
    error = fetch(mode, resolver_for(), f"http://{host}:9/")
    chain = causes(error)
    assert any(isinstance(link, ResolveError) for link in chain), chain


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_closed_resolver_gives_an_httpx_error(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    mode: str,
) -> None:
    host = unique_name("late")
    fault_dns.set(host, ["127.0.0.1"])
    resolver = resolver_for()
    resolver.close()
    error = fetch(mode, resolver, f"http://{host}:9/")
    assert "closed" in str(error)
    assert isinstance(causes(error)[-1], ResolveError)  # the resolver's own, chained
