"""The OpenTelemetry exporter, read back through the SDK's InMemoryMetricReader."""

from __future__ import annotations

from collections.abc import Callable

import opentelemetry.sdk.metrics as sdk_metrics
import opentelemetry.sdk.metrics.export as sdk_export

from outlast.observe import otel
from outlast.testing import DNSServer

from .scenario import drive_policies, drive_resolver


class Reader:
    """An SDK meter provider and the values its in-memory reader collects."""

    def __init__(self) -> None:
        self.reader = sdk_export.InMemoryMetricReader()
        self.provider = sdk_metrics.MeterProvider(metric_readers=[self.reader])

    def collect(self) -> dict[str, dict[frozenset[tuple[str, object]], float]]:
        data = self.reader.get_metrics_data()
        values: dict[str, dict[frozenset[tuple[str, object]], float]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "outlast"
                for metric in scope.metrics:
                    points = values.setdefault(metric.name, {})
                    for point in metric.data.data_points:
                        points[frozenset(point.attributes.items())] = point.value
        return values


def test_a_real_resolver_through_an_outage(
    fault_dns: DNSServer, blackhole: DNSServer, unique_name: Callable[[str], str]
) -> None:
    reader = Reader()
    drive_resolver([otel(reader.provider)], fault_dns, blackhole, unique_name("api"))
    values = reader.collect()
    assert values["outlast.dns.cache_misses"] == {frozenset(): 1}
    assert values["outlast.dns.cache_hits"] == {frozenset(): 1}
    assert values["outlast.dns.stale_served"] == {frozenset(): 2}
    assert values["outlast.dns.empty_distrusted"] == {frozenset({("negative", "NXDOMAIN")}): 1}
    assert values["outlast.dns.provider_errors"] == {
        frozenset({("provider", blackhole.provider)}): 2
    }
    assert values["outlast.dns.provider_ejections"] == {
        frozenset({("provider", blackhole.provider)}): 1
    }
    assert "outlast.dns.refresh_failures" not in values


def test_policies_and_the_breaker_gauge() -> None:
    reader = Reader()
    drive_policies([otel(reader.provider)])
    values = reader.collect()
    assert values["outlast.policy.retries"] == {frozenset({("key", "flaky")}): 2}
    assert values["outlast.policy.budget_exhausted"] == {frozenset({("key", "tight")}): 1}
    assert values["outlast.policy.breaker_state"] == {frozenset({("key", "flaky")}): 2.0}
