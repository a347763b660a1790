"""The counter model and its dependency-free exporter, Counts."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from collections.abc import Callable
from typing import ClassVar

import pytest

import outlast.dns
import outlast.observe
import outlast.policy
from outlast import Event
from outlast.dns import CacheHit, ProviderFailed
from outlast.observe import METRICS, Counts, Metric
from outlast.policy import BreakerStateChanged
from outlast.testing import DNSServer

from .scenario import drive_policies, drive_resolver

#: Events that no metric counts, on purpose.
NOT_COUNTED = {"dns.answer_updated", "dns.lkg_serving", "dns.lkg_ended"}  # logs, for now


def test_every_dns_and_policy_event_is_counted_or_deliberately_not() -> None:
    kinds = set()
    for module in (outlast.dns, outlast.policy):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event:
                kinds.add(obj.kind)
    assert "dns.cache_hit" in kinds
    assert "policy.breaker_state" in kinds
    assert kinds - NOT_COUNTED == kinds & set(METRICS)


def test_counts_a_real_resolver_through_an_outage(
    fault_dns: DNSServer, blackhole: DNSServer, unique_name: Callable[[str], str]
) -> None:
    counts = Counts()
    drive_resolver([counts], fault_dns, blackhole, unique_name("api"))
    assert counts.value("dns.cache_misses") == 1
    assert counts.value("dns.cache_hits") == 1
    assert counts.value("dns.stale_served") == 2
    assert counts.value("dns.empty_distrusted", negative="NXDOMAIN") == 1
    assert counts.value("dns.empty_distrusted", negative="NODATA") == 0
    assert counts.value("dns.provider_errors", provider=blackhole.provider) == 2
    assert counts.value("dns.provider_errors", provider=fault_dns.provider) == 0
    assert counts.value("dns.provider_ejections", provider=blackhole.provider) == 1
    assert counts.value("dns.refresh_failures") == 0


def test_counts_policies() -> None:
    counts = Counts()
    drive_policies([counts])
    assert counts.value("policy.retries", key="flaky") == 2
    assert counts.value("policy.retries", key="tight") == 0
    assert counts.value("policy.budget_exhausted", key="tight") == 1
    assert counts.value("policy.breaker_state", key="flaky") == 2.0
    assert counts.value("policy.breaker_state", key="tight") is None


def test_the_breaker_gauge_follows_the_state() -> None:
    counts = Counts()
    for new, value in (("closed", 0.0), ("open", 2.0), ("half-open", 1.0), ("closed", 0.0)):
        counts(BreakerStateChanged(key="db", old=None, new=new))
        assert counts.value("policy.breaker_state", key="db") == value


@dataclasses.dataclass(frozen=True, slots=True)
class _Unknown(Event):
    kind: ClassVar[str] = "http.something_new"


def test_the_transports_and_boto3_feed_the_failover_counter_by_kind() -> None:
    from outlast.aws import FailedOver as AwsFailedOver
    from outlast.http import FailedOver as HttpFailedOver

    counts = Counts()
    counts(HttpFailedOver("api.example.com", "127.0.0.1", 443, 2))
    counts(HttpFailedOver("api.example.com", "127.0.0.1", 443, 2))
    counts(AwsFailedOver("GetItem", "dynamodb", "us-east-1", "us-west-2", "refused"))
    counts(_Unknown())
    assert counts.value("failovers", kind="http.failed_over") == 2
    assert counts.value("failovers", kind="aws.failover") == 1
    assert set(counts.snapshot()) == {"failovers"}


def test_a_custom_table_counts_only_what_it_names() -> None:
    table = {"dns.provider_failed": Metric("errors", "provider errors", ("provider", "host"))}
    counts = Counts(table)
    counts(ProviderFailed("udp://10.0.0.2:53", "a.example", "timed out"))
    counts(CacheHit("a.example"))
    assert counts.snapshot() == {"errors": {("udp://10.0.0.2:53", "a.example"): 1.0}}
    with pytest.raises(KeyError):
        counts.value("dns.cache_hits")
    with pytest.raises(ValueError, match="labels"):
        counts.value("errors", provider="udp://10.0.0.2:53")


def test_one_name_defined_twice_differently_is_refused() -> None:
    table = {
        "a.one": Metric("same", "first", ("key",)),
        "a.two": Metric("same", "second", ()),
    }
    with pytest.raises(ValueError, match="'same' is defined twice"):
        Counts(table)


def test_outlast_imports_and_counts_without_the_exporter_libraries() -> None:
    # Each library is made unimportable; outlast must not need either until asked.
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "sys.modules['opentelemetry'] = None\n"
        "import outlast, outlast.observe\n"
        "from outlast.dns import CacheHit\n"
        "counts = outlast.observe.Counts()\n"
        "counts(CacheHit('a.example'))\n"
        "print(counts.value('dns.cache_hits'))\n"
        "for build in (outlast.observe.prometheus, outlast.observe.otel):\n"
        "    try:\n"
        "        build()\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert done.stdout.splitlines() == [
        "1.0",
        "this exporter needs prometheus_client: pip install 'outlast[prometheus]'",
        "this exporter needs opentelemetry-api: pip install 'outlast[otel]'",
    ]


def test_observe_all_is_sorted_and_complete() -> None:
    module = outlast.observe
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and name != "annotations" and not inspect.ismodule(value)
    }
    assert set(module.__all__) == public
    assert module.__all__ == sorted(module.__all__)
