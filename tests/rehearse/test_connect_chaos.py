"""Connect faults meet outlast's dialler and policy as real refusals and timeouts do."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

import outlast
from outlast import Event
from outlast.chaos import FaultInjected
from outlast.http import AddressFailed
from outlast.testing import Chaos, DNSServer
from rehearse.httpserver import TinyServer

FRESH = httpx.Limits(max_keepalive_connections=0)  # every request dials a new connection
CALLS = 400


def test_five_percent_refusals_are_absorbed_by_retries(
    outlast_dns: DNSServer,
    outlast_chaos: Chaos,
    unique_name: Callable[[str], str],
    web: TinyServer,
) -> None:
    name = unique_name("refuse5")
    outlast_dns.set(name, ["127.0.0.1"])
    outlast_chaos("connect_refused=0.05,seed=8")
    events: list[Event] = []
    ok = failed = 0
    with outlast.Client(limits=FRESH, listeners=[events.append]) as client:
        for _ in range(CALLS):  # real backoff sleeps: no testing mode here
            try:
                response = client.get(f"http://{name}:{web.port}/")
            except httpx.HTTPError:
                failed += 1
            else:
                ok += response.status_code == 200
    injected = [e for e in events if isinstance(e, FaultInjected)]
    assert ok >= 0.99 * CALLS, f"{ok} of {CALLS} succeeded ({failed} failed)"
    assert 5 <= len(injected) <= 40  # about 5% of some 400 dials, with this seed
    assert {e.fault for e in injected} == {"connect_refused"}
    assert web.hits == ok
    # The dialler saw each refusal as a real one: the address failed.
    failed_dials = [e for e in events if isinstance(e, AddressFailed)]
    assert len(failed_dials) == len(injected)
    assert all("Connection refused" in e.reason for e in failed_dials)


def test_all_refusals_surface_as_httpx_errors(
    outlast_dns: DNSServer,
    outlast_chaos: Chaos,
    outlast_testing: None,
    unique_name: Callable[[str], str],
    web: TinyServer,
) -> None:
    name = unique_name("refuse100")
    outlast_dns.set(name, ["127.0.0.1"])
    outlast_chaos("connect_refused=1.0")
    errors: list[httpx.HTTPError] = []
    with outlast.Client() as client:
        for _ in range(10):
            with pytest.raises(httpx.ConnectError) as caught:
                client.get(f"http://{name}:{web.port}/")
            errors.append(caught.value)
    assert web.hits == 0
    assert "Connection refused (injected by OUTLAST_CHAOS)" in str(errors[0])
    # After enough failures the breaker opens: still an httpx.ConnectError.
    assert isinstance(errors[-1], outlast.CircuitOpenError)


def test_connect_timeouts_wait_out_the_connect_timeout(
    outlast_dns: DNSServer,
    outlast_chaos: Chaos,
    outlast_testing: None,
    unique_name: Callable[[str], str],
    web: TinyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = unique_name("silent")
    outlast_dns.set(name, ["127.0.0.1"])
    monkeypatch.setenv("OUTLAST_RETRY_ATTEMPTS", "2")
    outlast_chaos("connect_timeout=1.0")
    timeout = httpx.Timeout(5.0, connect=0.2)
    with outlast.Client(timeout=timeout) as client, pytest.raises(httpx.ConnectTimeout) as caught:
        client.get(f"http://{name}:{web.port}/")
    assert "injected by OUTLAST_CHAOS" in str(caught.value)
    assert web.hits == 0


@pytest.mark.anyio
async def test_async_client_absorbs_refusals_and_surfaces_all_of_them(
    outlast_dns: DNSServer,
    outlast_chaos: Chaos,
    unique_name: Callable[[str], str],
    web: TinyServer,
) -> None:
    name = unique_name("arefuse")
    outlast_dns.set(name, ["127.0.0.1"])
    outlast_chaos("connect_refused=0.05,seed=3")
    ok = failed = 0
    async with outlast.AsyncClient(limits=FRESH) as client:
        for _ in range(200):
            try:
                response = await client.get(f"http://{name}:{web.port}/")
            except httpx.HTTPError:
                failed += 1
            else:
                ok += response.status_code == 200
    assert ok >= 198, f"{ok} of 200 succeeded ({failed} failed)"

    outlast_chaos("connect_refused=1.0")  # read when the next client is built
    async with outlast.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError, match="injected by OUTLAST_CHAOS"):
            await client.get(f"http://{name}:{web.port}/")
