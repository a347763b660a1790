"""A pooled keep-alive connection follows its name: retired once its address left the answer.

A name moves from 127.0.0.1 to 127.0.0.5 (TTL 1 s) while a client keeps one connection
alive to the old address. Once the answer that listed the old address has expired and
the name's answer no longer lists it, the idle connection is closed and the next
request dials the new address. While the address stays listed, the connection is kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from loopback_http import Backend

import outlast
from outlast import Resolver
from outlast.testing import DNSServer

MOVE_WITHIN = 4.0  # TTL 1 s, then a refresh and one recheck (1 s): about 2 s; generous


def _follow(
    face: str, resolver: Resolver, url: str, move: Callable[[], None], done: Callable[[], bool]
) -> None:
    """GET ``url``, ``move`` the name, then GET every 50 ms until ``done()`` (at most 6 s)."""

    def loop_sync() -> None:
        with outlast.Client(resolver=resolver, timeout=2.0) as client:
            assert client.get(url).text == "GET /"
            move()
            start = time.monotonic()
            for _ in range(120):  # bounded: 6 s
                client.get(url)
                if done() or time.monotonic() - start > 6:
                    break
                time.sleep(0.05)

    async def loop_async() -> None:
        async with outlast.AsyncClient(resolver=resolver, timeout=2.0) as client:
            assert (await client.get(url)).text == "GET /"
            move()
            start = time.monotonic()
            for _ in range(120):
                await client.get(url)
                if done() or time.monotonic() - start > 6:
                    break
                await asyncio.sleep(0.05)

    if face == "sync":
        loop_sync()
    else:
        asyncio.run(loop_async())


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_kept_alive_connection_is_retired_when_its_address_leaves_the_name(
    face: str,
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("move")
    fault_dns.set(name, ["127.0.0.1"], ttl=1)
    resolver = resolver_for()
    with Backend() as old, Backend(address="127.0.0.5", port=old.port) as new:
        moved_at: list[float] = []

        def move() -> None:
            fault_dns.set(name, ["127.0.0.5"], ttl=1)
            moved_at.append(time.monotonic())

        _follow(face, resolver, f"http://{name}:{old.port}/", move, lambda: new.hits > 0)
        took = time.monotonic() - moved_at[0]
    assert new.hits > 0, "the kept-alive connection to the old address was never retired"
    assert took < MOVE_WITHIN
    assert old.connections == 1  # the old address was never dialled again
    assert new.connections == 1


def test_a_connection_whose_address_is_still_listed_is_kept(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
) -> None:
    name = unique_name("stay")
    fault_dns.set(name, ["127.0.0.1"], ttl=1)
    resolver = resolver_for()
    with Backend() as server, outlast.Client(resolver=resolver, timeout=2.0) as client:
        start = time.monotonic()
        for _ in range(60):  # bounded: about 3 s, three TTLs
            assert client.get(f"http://{name}:{server.port}/").status_code == 200
            time.sleep(0.05)
            if time.monotonic() - start > 3:
                break
    assert server.connections == 1  # every answer still listed it: never retired
