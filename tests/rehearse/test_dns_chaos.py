"""DNS faults are injected at the provider layer: warm names keep their LKG, cold ones fail."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import outlast
from outlast import Event, ResolveError, Resolver
from outlast.chaos import FaultInjected
from outlast.dns import EmptyAnswerDistrusted
from outlast.testing import DNSServer
from rehearse.httpserver import TinyServer


def _env(server: DNSServer, **more: str) -> dict[str, str]:
    return {"OUTLAST_DNS_PROVIDERS": server.provider, "OUTLAST_DNS_TIMEOUT": "0.3", **more}


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("dns_empty=1.0", "NODATA from udp://"),
        ("dns_nxdomain=1.0", "NXDOMAIN from udp://"),
        ("dns_servfail=1.0", "SERVFAIL (injected by OUTLAST_CHAOS)"),
        ("dns_timeout=1.0", "timed out"),
    ],
)
def test_a_cold_name_fails_and_says_the_fault_was_injected(
    fault_dns: DNSServer, unique_name: Callable[[str], str], spec: str, reason: str
) -> None:
    name = unique_name("cold")
    fault_dns.set(name, ["127.0.0.1"])
    events: list[Event] = []
    env = _env(fault_dns, OUTLAST_CHAOS=spec)
    resolver = Resolver.from_env(env, listeners=[events.append])
    with resolver, pytest.raises(ResolveError) as caught:
        resolver.resolve(name)
    assert reason in str(caught.value)
    injected = [e for e in events if isinstance(e, FaultInjected)]
    assert injected
    assert injected[0].fault == spec.partition("=")[0]
    assert (injected[0].layer, injected[0].host, injected[0].injected) == ("dns", name, True)
    assert fault_dns.queries == 0  # the fault stood in for the provider: nothing was asked


def test_a_warm_name_keeps_its_last_known_good_through_dns_empty(
    fault_dns: DNSServer, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """A process restarted mid-outage, warmed by its cache file, keeps serving the name."""
    name = unique_name("warm")
    fault_dns.set(name, ["127.0.0.1"], ttl=1)
    cache = str(tmp_path / "lkg.json")
    with Resolver.from_env(_env(fault_dns, OUTLAST_DNS_CACHE_FILE=cache)) as before:
        assert before.resolve(name).addresses == ("127.0.0.1",)
    events: list[Event] = []
    env = _env(fault_dns, OUTLAST_DNS_CACHE_FILE=cache, OUTLAST_CHAOS="dns_empty=1.0")
    with Resolver.from_env(env, listeners=[events.append]) as during:
        answers = []
        for _ in range(20):  # bounded: the refresh runs in the background
            answers.append(during.resolve(name))
            if any(isinstance(e, EmptyAnswerDistrusted) for e in events):
                break
            time.sleep(0.05)
        cold = unique_name("cold")
        fault_dns.set(cold, ["127.0.0.1"])
        with pytest.raises(ResolveError):
            during.resolve(cold)
    assert all(a.addresses == ("127.0.0.1",) for a in answers)
    assert any(isinstance(e, EmptyAnswerDistrusted) for e in events), "no empty answer was seen"
    assert any(isinstance(e, FaultInjected) and e.host == name for e in events)


def test_the_outage_starts_after_warm_up_and_a_real_client_rides_it_out(
    outlast_dns: DNSServer,
    unique_name: Callable[[str], str],
    web: TinyServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OUTLAST_CHAOS with after=: a running service warms up, then its record goes empty."""
    name = unique_name("svc")
    outlast_dns.set(name, ["127.0.0.1"], ttl=1)
    monkeypatch.setenv("OUTLAST_CHAOS", "dns_empty=1.0,after=1.0")
    events: list[Event] = []
    url = f"http://{name}:{web.port}/"
    fresh = httpx.Limits(max_keepalive_connections=0)  # every request dials, so resolves
    with outlast.Client(limits=fresh, listeners=[events.append]) as client:
        assert client.get(url).status_code == 200  # warm, before the outage
        assert not any(isinstance(e, FaultInjected) for e in events), "warm-up was too slow"
        statuses = []
        start = time.monotonic()
        for _ in range(400):  # bounded; about 3.5 s: 1 s warm, TTL 1 s, then distrust
            if time.monotonic() - start > 3.5:
                break
            statuses.append(client.get(url).status_code)
            time.sleep(0.02)
    assert len(statuses) >= 20
    assert statuses == [200] * len(statuses)
    assert any(isinstance(e, FaultInjected) and e.fault == "dns_empty" for e in events)
    assert any(isinstance(e, EmptyAnswerDistrusted) for e in events)


def test_a_scope_pattern_limits_the_fault_to_matching_names(
    fault_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    inside = "dynamodb.us-east-1.amazonaws.com"
    outside = unique_name("other")
    fault_dns.set(inside, ["127.0.0.1"])
    fault_dns.set(outside, ["127.0.0.2"])
    env = _env(fault_dns, OUTLAST_CHAOS="dns_nxdomain=1.0@*.amazonaws.com")
    with Resolver.from_env(env) as resolver:
        assert resolver.resolve(outside).addresses == ("127.0.0.2",)
        with pytest.raises(ResolveError, match="NXDOMAIN"):
            resolver.resolve(inside)


def test_injected_faults_are_logged_under_outlast_chaos(
    fault_dns: DNSServer, unique_name: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    name = unique_name("logged")
    caplog.set_level(logging.INFO, logger="outlast.chaos")
    env = _env(fault_dns, OUTLAST_CHAOS="dns_servfail=1")
    with Resolver.from_env(env) as resolver, pytest.raises(ResolveError):
        resolver.resolve(name)
    records = [r for r in caplog.records if r.name == "outlast.chaos"]
    assert records[0].outlast_event == "chaos.armed"  # type: ignore[attr-defined]
    assert records[0].levelno == logging.WARNING
    records = records[1:]
    assert records
    assert records[0].outlast_event == "chaos.injected"  # type: ignore[attr-defined]
    assert records[0].levelno == logging.WARNING
    assert records[0].outlast_injected is True  # type: ignore[attr-defined]
    assert records[0].outlast_fault == "dns_servfail"  # type: ignore[attr-defined]
