"""The October 2025 failure through httpx: the name's record goes empty while requests run.

Every request keeps succeeding on the last-known-good addresses. Once with the
dnspython fault server, once with a real BIND 9 changed by nsupdate.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from loopback_http import Backend

from outlast import Event, Resolver
from outlast.dns import EmptyAnswerDistrusted
from outlast.http import AsyncTransport, Transport
from outlast.testing import DNSServer
from servers.bind import BindServer

FRESH = httpx.Limits(max_keepalive_connections=0)  # every request dials, so resolves


def _run_through_outage(
    client: httpx.Client, url: str, go_empty: Callable[[], None], seconds: float = 2.5
) -> list[int]:
    statuses: list[int] = []
    timer = threading.Timer(0.4, go_empty)
    timer.start()
    start = time.monotonic()
    try:
        for _ in range(2000):  # bounded
            if time.monotonic() - start >= seconds:
                break
            statuses.append(client.get(url).status_code)
    finally:
        timer.cancel()
    return statuses


def test_empty_record_outage_sync(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("outage")
    fault_dns.set(name, ["127.0.0.1"], ttl=1)
    events: list[Event] = []
    resolver = resolver_for(listeners=[events.append])
    transport = Transport(limits=FRESH, resolver=resolver)
    with Backend() as server, httpx.Client(transport=transport) as client:
        statuses = _run_through_outage(
            client, f"http://{name}:{server.port}/", lambda: fault_dns.empty(name)
        )
    assert len(statuses) >= 20
    assert statuses == [200] * len(statuses)
    assert any(isinstance(e, EmptyAnswerDistrusted) for e in events)  # the outage was seen


def test_empty_record_outage_async(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("aoutage")
    fault_dns.set(name, ["127.0.0.1"], ttl=1)
    events: list[Event] = []
    resolver = resolver_for(listeners=[events.append])

    async def main(port: int) -> list[int]:
        statuses: list[int] = []
        transport = AsyncTransport(limits=FRESH, resolver=resolver)
        async with httpx.AsyncClient(transport=transport) as client:
            start = time.monotonic()
            for _ in range(2000):
                elapsed = time.monotonic() - start
                if elapsed >= 2.5:
                    break
                if elapsed >= 0.4:
                    fault_dns.empty(name)
                statuses.append((await client.get(f"http://{name}:{port}/")).status_code)
                await asyncio.sleep(0.005)
        return statuses

    with Backend() as server:
        statuses = asyncio.run(main(server.port))
    assert len(statuses) >= 20
    assert statuses == [200] * len(statuses)
    assert any(isinstance(e, EmptyAnswerDistrusted) for e in events)


@pytest.mark.bind
def test_empty_record_outage_on_real_bind(
    bind: BindServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("bindout")
    bind.set(name, ["127.0.0.1"], ttl=1)
    events: list[Event] = []
    resolver = Resolver(providers=[bind.provider], timeout=0.5, listeners=[events.append])
    try:
        with Backend() as server:
            transport = Transport(limits=FRESH, resolver=resolver)
            with httpx.Client(transport=transport) as client:
                statuses = _run_through_outage(
                    client, f"http://{name}:{server.port}/", lambda: bind.empty(name)
                )
    finally:
        resolver.close()
    assert len(statuses) >= 20
    assert statuses == [200] * len(statuses)
    assert any(isinstance(e, EmptyAnswerDistrusted) for e in events)
