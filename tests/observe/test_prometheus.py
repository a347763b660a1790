"""The Prometheus exporter, read back through prometheus_client's own registry."""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client
import pytest

from outlast.observe import prometheus
from outlast.testing import DNSServer

from .scenario import drive_policies, drive_resolver


def test_a_real_resolver_through_an_outage(
    fault_dns: DNSServer, blackhole: DNSServer, unique_name: Callable[[str], str]
) -> None:
    registry = prometheus_client.CollectorRegistry()
    drive_resolver([prometheus(registry)], fault_dns, blackhole, unique_name("api"))

    def value(name: str, **labels: str) -> float | None:
        result: float | None = registry.get_sample_value(name, labels)
        return result

    assert value("outlast_dns_cache_misses_total") == 1
    assert value("outlast_dns_cache_hits_total") == 1
    assert value("outlast_dns_stale_served_total") == 2
    assert value("outlast_dns_empty_distrusted_total", negative="NXDOMAIN") == 1
    assert value("outlast_dns_provider_errors_total", provider=blackhole.provider) == 2
    assert value("outlast_dns_provider_errors_total", provider=fault_dns.provider) is None
    assert value("outlast_dns_provider_ejections_total", provider=blackhole.provider) == 1
    assert value("outlast_dns_refresh_failures_total") == 0


def test_policies_and_the_breaker_gauge() -> None:
    registry = prometheus_client.CollectorRegistry()
    drive_policies([prometheus(registry)])
    assert registry.get_sample_value("outlast_policy_retries_total", {"key": "flaky"}) == 2
    assert registry.get_sample_value("outlast_policy_budget_exhausted_total", {"key": "tight"}) == 1
    assert registry.get_sample_value("outlast_policy_breaker_state", {"key": "flaky"}) == 2.0
    assert registry.get_sample_value("outlast_policy_breaker_state", {"key": "tight"}) is None


def test_the_exposition_has_help_and_types() -> None:
    registry = prometheus_client.CollectorRegistry()
    prometheus(registry, namespace="svc")
    text = prometheus_client.generate_latest(registry).decode()
    assert "# HELP svc_dns_cache_hits_total Fresh answers served from memory" in text
    assert "# TYPE svc_dns_cache_hits_total counter" in text
    assert "# TYPE svc_policy_breaker_state gauge" in text
    assert "# TYPE svc_failovers_total counter" in text


def test_one_registry_takes_one_exporter() -> None:
    registry = prometheus_client.CollectorRegistry()
    prometheus(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        prometheus(registry)
