"""The names-served-stale gauge and the request-latency histogram, through every exporter."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx
import opentelemetry.sdk.metrics as sdk_metrics
import opentelemetry.sdk.metrics.export as sdk_export
import prometheus_client
import pytest

import outlast
from outlast import Listener, Resolver
from outlast.dns import CacheHit, StaleServed
from outlast.observe import LATENCY_BUCKETS, Counts, otel, prometheus
from outlast.testing import DNSServer, set_testing

from .scenario import ManualClock, wait_for


class Exporters:
    """Counts, a Prometheus registry and an OpenTelemetry in-memory reader, side by side."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.registry = prometheus_client.CollectorRegistry()
        self.reader = sdk_export.InMemoryMetricReader()
        provider = sdk_metrics.MeterProvider(metric_readers=[self.reader])
        self.listeners: list[Listener] = [
            self.counts,
            prometheus(self.registry),
            otel(provider),
        ]

    def otel_points(self, name: str) -> dict[frozenset[tuple[str, object]], object]:
        found: dict[frozenset[tuple[str, object]], object] = {}
        for resource in self.reader.get_metrics_data().resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            found[frozenset(point.attributes.items())] = point
        return found

    def stale_names(self) -> tuple[float | None, float | None, object]:
        points = self.otel_points("outlast.dns.stale_names")
        point = points.get(frozenset())
        return (
            self.counts.value("dns.stale_names"),
            self.registry.get_sample_value("outlast_dns_stale_names"),
            None if point is None else getattr(point, "value", None),
        )


def test_the_stale_names_gauge_rises_in_an_outage_and_falls_after(
    fault_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name, fallback = unique_name("lkg"), unique_name("static")
    fault_dns.set(name, ["192.0.2.10"], ttl=30)
    seen = Exporters()
    clock = ManualClock()
    with Resolver(
        providers=[fault_dns.provider],
        timeout=0.5,
        clock=clock,
        static={fallback: ["192.0.2.99"]},
        listeners=seen.listeners,
    ) as resolver:
        resolver.resolve(name)
        resolver.resolve(name)
        assert seen.stale_names() == (None, 0.0, None)  # healthy: nothing tracked

        fault_dns.nxdomain(name)
        clock.now += 31  # expired: served stale while a routine refresh runs
        assert resolver.resolve(name).stale
        assert seen.counts.value("dns.stale_names") is None  # a refresh is not an outage
        wait_for(lambda: seen.counts.value("dns.empty_distrusted", negative="NXDOMAIN") == 1)
        assert resolver.resolve(name).source.startswith("last-known-good")
        assert resolver.resolve(fallback).addresses == ("192.0.2.99",)  # NXDOMAIN: static
        for _ in range(5):  # asked again: still two names, not seven
            resolver.resolve(name)
            resolver.resolve(fallback)
        assert seen.stale_names() == (2.0, 2.0, 2)
        assert {s.host for s in resolver.snapshot().stale} == {name}

        fault_dns.set(name, ["192.0.2.10"], ttl=30)  # DNS heals
        clock.now += 31  # the distrusted negative is checked again
        resolver.resolve(name)
        wait_for(lambda: not resolver.resolve(name).stale)
        assert seen.stale_names() == (1.0, 1.0, 1)  # the static name is still a fallback


def test_a_routine_hit_costs_the_gauge_nothing() -> None:
    counts = Counts()
    for _ in range(3):
        counts(CacheHit("a.test"))
    assert counts.snapshot() == {"dns.cache_hits": {(): 3.0}}
    counts(StaleServed("a.test", "stale: refresh failing (SERVFAIL); from x", 40.0))
    counts(StaleServed("a.test", "last-known-good: NXDOMAIN distrusted for 3s; from x", 41.0))
    assert counts.value("dns.stale_names") == 1.0
    counts(CacheHit("a.test"))
    assert counts.value("dns.stale_names") == 0.0


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_request_latency_histogram_by_status_class(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    http_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "OUTLAST_DISABLE"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.lower(), raising=False)
    name = unique_name("web")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    seen = Exporters()
    with Resolver(providers=[fault_dns.provider], timeout=0.5) as resolver, set_testing(True):
        with outlast.Client(resolver=resolver, listeners=seen.listeners) as client:
            assert client.get(f"http://{name}:{http_port}/").status_code == 200
            assert client.get(f"http://{name}:{http_port}/503").status_code == 503
            with pytest.raises(httpx.ConnectError):
                client.get(f"http://127.0.0.1:{_refused_port()}/")

        async def once() -> int:
            async with outlast.AsyncClient(resolver=resolver, listeners=seen.listeners) as aclient:
                return (await aclient.get(f"http://{name}:{http_port}/")).status_code

        assert asyncio.run(once()) == 200

    twos = seen.counts.samples("http.request_duration", status_class="2xx")
    assert len(twos) == 2
    assert all(0 < s < 10 for s in twos)
    assert seen.counts.value("http.request_duration", status_class="5xx") == 1  # retries: one
    assert seen.counts.value("http.request_duration", status_class="error") == 1
    prom = seen.registry.get_sample_value
    assert prom("outlast_http_request_duration_seconds_count", {"status_class": "2xx"}) == 2
    assert prom("outlast_http_request_duration_seconds_count", {"status_class": "5xx"}) == 1
    assert (
        prom("outlast_http_request_duration_seconds_bucket", {"status_class": "2xx", "le": "60.0"})
        == 2
    )
    points = seen.otel_points("outlast.http.request_duration")
    two = points[frozenset({("status_class", "2xx")})]
    assert two.count == 2
    assert tuple(two.explicit_bounds) == LATENCY_BUCKETS
    assert set(points) == {
        frozenset({("status_class", c)}) for c in ("2xx", "5xx", "error")
    }  # bounded: no origin, host or path among the labels


def test_no_listener_no_measurement(
    fault_dns: DNSServer, unique_name: Callable[[str], str], http_port: int
) -> None:
    name = unique_name("plain")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    with Resolver(providers=[fault_dns.provider]) as resolver:
        transport = outlast.Transport(resolver=resolver)
        assert not transport._parts.emitter.enabled
        with httpx.Client(transport=transport) as client:
            assert client.get(f"http://{name}:{http_port}/").status_code == 200
