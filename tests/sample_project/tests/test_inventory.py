"""The sample project's own tests: rehearsing outages with outlast's pytest plugin."""

from __future__ import annotations

import time

import httpx
import pytest
from inventory import ENDPOINT, Inventory

import outlast
from outlast.testing import Chaos, DNSServer


def test_the_record_goes_empty_and_the_service_keeps_counting(
    outlast_dns: DNSServer, dynamodb_port: int
) -> None:
    outlast_dns.set(ENDPOINT, ["127.0.0.1"], ttl=1)
    with outlast.Client() as client:
        url = f"http://{ENDPOINT}:{dynamodb_port}/items"
        assert client.get(url).text == "42"
        outlast_dns.empty(ENDPOINT)  # the October 2025 failure
        time.sleep(1.2)  # past the record's TTL: outlast asks again, gets nothing
        for _ in range(5):
            assert client.get(url).text == "42"
    assert outlast_dns.queries_for(ENDPOINT) >= 2


def test_a_cold_start_during_the_outage_fails_loudly(
    outlast_dns: DNSServer, outlast_chaos: Chaos, dynamodb_port: int
) -> None:
    outlast_dns.set(ENDPOINT, ["127.0.0.1"])
    outlast_chaos("dns_empty=1.0@*.amazonaws.com")
    with pytest.raises(httpx.ConnectError, match="injected by OUTLAST_CHAOS"):
        Inventory(dynamodb_port).count()


@pytest.mark.anyio
async def test_async_callers_ride_out_refused_connections(
    outlast_dns: DNSServer, outlast_chaos: Chaos, outlast_testing: None, dynamodb_port: int
) -> None:
    outlast_dns.set(ENDPOINT, ["127.0.0.1"])
    outlast_chaos("connect_refused=0.05,seed=5")
    counts = [await Inventory(dynamodb_port).acount() for _ in range(40)]
    assert counts == [42] * 40


def test_a_typo_in_the_rehearsal_is_caught_at_once(outlast_chaos: Chaos) -> None:
    with pytest.raises(outlast.ConfigError, match="OUTLAST_CHAOS"):
        outlast_chaos("dns_emtpy=1.0")
