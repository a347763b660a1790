"""http_503 and latency wrap each attempt inside the policy, as a real slow or failing backend."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

import outlast
from outlast import Event
from outlast.chaos import FaultInjected
from outlast.policy import RetryScheduled
from outlast.testing import Chaos, DNSServer
from rehearse.httpserver import TinyServer


def test_http_503_is_retried_like_a_real_one_and_finally_returned(
    outlast_dns: DNSServer,
    outlast_chaos: Chaos,
    outlast_testing: None,
    unique_name: Callable[[str], str],
    web: TinyServer,
) -> None:
    name = unique_name("unavailable")
    outlast_dns.set(name, ["127.0.0.1"])
    outlast_chaos("http_503=1.0")
    events: list[Event] = []
    with outlast.Client(listeners=[events.append]) as client:
        response = client.get(f"http://{name}:{web.port}/table")
    assert response.status_code == 503
    assert response.headers["x-outlast-chaos"] == "http_503"
    assert web.hits == 0  # the backend never saw it
    injected = [e for e in events if isinstance(e, FaultInjected)]
    assert [e.fault for e in injected] == ["http_503"] * 3  # OUTLAST_RETRY_ATTEMPTS=3
    assert injected[0].target == f"GET http://{name}:{web.port}/table"
    assert sum(isinstance(e, RetryScheduled) for e in events) == 2


def test_http_503_scoped_to_other_names_leaves_this_one_alone(
    outlast_dns: DNSServer,
    outlast_chaos: Chaos,
    unique_name: Callable[[str], str],
    web: TinyServer,
) -> None:
    name = unique_name("healthy")
    outlast_dns.set(name, ["127.0.0.1"])
    outlast_chaos("http_503=1.0@*.amazonaws.com")
    with outlast.Client() as client:
        assert client.get(f"http://{name}:{web.port}/").status_code == 200
    assert web.hits == 1


@pytest.mark.anyio
async def test_latency_delays_attempts(
    outlast_dns: DNSServer,
    outlast_chaos: Chaos,
    unique_name: Callable[[str], str],
    web: TinyServer,
) -> None:
    name = unique_name("slow")
    outlast_dns.set(name, ["127.0.0.1"])
    url = f"http://{name}:{web.port}/"
    outlast_chaos("latency=0.3@1.0")
    async with outlast.AsyncClient() as client:
        start = time.monotonic()
        assert (await client.get(url)).status_code == 200
        slow = time.monotonic() - start
    outlast_chaos.clear()
    async with outlast.AsyncClient() as client:
        await client.get(url)  # resolve and connect once, untimed
        start = time.monotonic()
        assert (await client.get(url)).status_code == 200
        fast = time.monotonic() - start
    assert slow >= 0.3
    assert fast < 0.3


def test_latency_beyond_the_read_timeout_times_out_like_a_slow_server(
    outlast_dns: DNSServer,
    outlast_chaos: Chaos,
    outlast_testing: None,
    unique_name: Callable[[str], str],
    web: TinyServer,
) -> None:
    name = unique_name("lag")
    outlast_dns.set(name, ["127.0.0.1"])
    outlast_chaos("latency=5@1.0")
    events: list[Event] = []
    client = outlast.Client(timeout=httpx.Timeout(2.0, read=0.1), listeners=[events.append])
    with client, pytest.raises(httpx.ReadTimeout, match="injected by OUTLAST_CHAOS"):
        client.get(f"http://{name}:{web.port}/")
    assert web.hits == 0
    # A GET is idempotent: the read timeout was retried, as a real one would be.
    assert sum(isinstance(e, FaultInjected) for e in events) == 3
