"""Address failover on real sockets: a refusing address, a silent one, all of them dead.

Names are served by a real DNS server on loopback; 127.0.0.2 and 127.0.0.4 have nothing
listening (the kernel refuses), and `silent_address` drops SYNs like a black hole.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from loopback_http import Backend, silent_address

import outlast
from outlast import Event, Resolver
from outlast.http import AddressEjected, AddressFailed, AsyncTransport, FailedOver, Transport
from outlast.testing import DNSServer

FRESH = httpx.Limits(max_keepalive_connections=0)  # every request dials anew
ONE_ATTEMPT = outlast.Policy(retry=outlast.Retry(attempts=1), breaker=None)


def _name_first(
    fault_dns: DNSServer,
    resolver: Resolver,
    unique_name: Callable[[str], str],
    addresses: list[str],
) -> str:
    """A fresh name for ``addresses`` whose cached answer lists ``addresses[0]`` first.

    A DNS server may order an answer's records as it likes (dnspython's does); the
    resolver keeps the order it received for the record's TTL. Asking a few names
    finds one that puts the address under test first (each try is a coin toss).
    """
    for _ in range(20):
        name = unique_name("order")
        fault_dns.set(name, addresses)
        if resolver.resolve(name).addresses[0] == addresses[0]:
            return name
    raise AssertionError(f"no answer listed {addresses[0]} first in 20 tries")


def _failed(events: list[Event], address: str) -> int:
    return sum(1 for e in events if isinstance(e, AddressFailed) and e.address == address)


def _run_for(seconds: float, send: Callable[[], httpx.Response]) -> tuple[int, float, list[int]]:
    start = time.monotonic()
    statuses = []
    for _ in range(500):  # bounded
        if time.monotonic() - start >= seconds:
            break
        statuses.append(send().status_code)
    return len(statuses), time.monotonic() - start, statuses


def test_refusing_first_address_is_tried_once_per_ejection_window(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    resolver = resolver_for()
    name = _name_first(fault_dns, resolver, unique_name, ["127.0.0.2", "127.0.0.1"])
    events: list[Event] = []
    window = 0.4
    with Backend() as server:
        transport = Transport(
            limits=FRESH, resolver=resolver, eject_for=window, listeners=[events.append]
        )
        with httpx.Client(transport=transport) as client:
            count, elapsed, statuses = _run_for(
                1.3, lambda: client.get(f"http://{name}:{server.port}/")
            )
    assert statuses == [200] * count
    assert count >= 10
    assert server.connections == count  # each request dialled; none were lost
    dead = _failed(events, "127.0.0.2")
    assert 2 <= dead <= int(elapsed / window) + 1  # once per window, and back after it
    assert _failed(events, "127.0.0.1") == 0
    assert any(isinstance(e, AddressEjected) and e.address == "127.0.0.2" for e in events)
    assert any(isinstance(e, FailedOver) and e.address == "127.0.0.1" for e in events)


def test_refusing_first_address_async(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    resolver = resolver_for()
    name = _name_first(fault_dns, resolver, unique_name, ["127.0.0.2", "127.0.0.1"])
    events: list[Event] = []

    async def main(port: int) -> tuple[list[int], float]:
        transport = AsyncTransport(
            limits=FRESH, resolver=resolver, eject_for=30, listeners=[events.append]
        )
        start = time.monotonic()
        async with httpx.AsyncClient(transport=transport) as client:
            responses = [await client.get(f"http://{name}:{port}/") for _ in range(20)]
        return [r.status_code for r in responses], time.monotonic() - start

    with Backend() as server:
        statuses, elapsed = asyncio.run(main(server.port))
    assert statuses == [200] * 20
    assert _failed(events, "127.0.0.2") == 1  # refused once, then ejected for the window
    assert elapsed < 2.0  # a refusal starts the next address at once, no 250 ms stagger


def test_silent_first_address_happy_eyeballs_sync(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    resolver = resolver_for()
    name = _name_first(fault_dns, resolver, unique_name, ["127.0.0.3", "127.0.0.1"])
    events: list[Event] = []
    with silent_address("127.0.0.3") as port, Backend(port=port) as server:
        transport = Transport(limits=FRESH, resolver=resolver, listeners=[events.append])
        took = []
        with httpx.Client(transport=transport, timeout=5.0) as client:
            for _ in range(3):
                start = time.monotonic()
                response = client.get(f"http://{name}:{port}/")
                took.append(time.monotonic() - start)
                assert response.status_code == 200
    # RFC 8305 in the sync transport too: the second address starts after the 250 ms
    # stagger and wins (about 0.26 s; the bound is generous for a busy machine).
    assert 0.24 <= took[0] < 1.0
    assert max(took[1:]) < 0.2  # the silent one, overtaken, is tried last now
    assert _failed(events, "127.0.0.3") == 1
    assert server.connections == 3


def test_silent_first_address_happy_eyeballs_async(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    resolver = resolver_for()
    name = _name_first(fault_dns, resolver, unique_name, ["127.0.0.3", "127.0.0.1"])
    events: list[Event] = []

    async def main(port: int) -> list[float]:
        transport = AsyncTransport(limits=FRESH, resolver=resolver, listeners=[events.append])
        took = []
        async with httpx.AsyncClient(transport=transport, timeout=5.0) as client:
            for _ in range(3):
                start = time.monotonic()
                response = await client.get(f"http://{name}:{port}/")
                took.append(time.monotonic() - start)
                assert response.status_code == 200
        return took

    with silent_address("127.0.0.3") as port, Backend(port=port):
        took = asyncio.run(main(port))
    assert 0.24 <= took[0] < 1.0  # the second address started after the 250 ms stagger
    assert max(took[1:]) < 0.2  # the silent one, overtaken, is tried last now
    assert _failed(events, "127.0.0.3") == 1


def test_every_address_dead_is_one_connect_error_naming_them(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("dead")
    fault_dns.set(name, ["127.0.0.2", "127.0.0.4"])
    events: list[Event] = []
    transport = Transport(resolver=resolver_for(), policy=ONE_ATTEMPT, listeners=[events.append])
    with httpx.Client(transport=transport) as client:
        for _ in range(2):
            with pytest.raises(httpx.ConnectError) as info:
                client.get(f"http://{name}:9/")
            assert "127.0.0.2" in str(info.value)
            assert "127.0.0.4" in str(info.value)
    # Both were ejected after the first request, yet the second still dialled both:
    # ejection never leaves a name without addresses.
    assert _failed(events, "127.0.0.2") == 2
    assert _failed(events, "127.0.0.4") == 2


def test_every_address_dead_async(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("adead")
    fault_dns.set(name, ["127.0.0.2", "127.0.0.4"])
    resolver = resolver_for()

    async def main() -> None:
        transport = AsyncTransport(resolver=resolver, policy=ONE_ATTEMPT)
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(f"http://{name}:9/")

    with pytest.raises(httpx.ConnectError) as info:
        asyncio.run(main())
    assert "127.0.0.2" in str(info.value)
    assert "127.0.0.4" in str(info.value)
