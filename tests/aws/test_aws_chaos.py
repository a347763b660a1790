"""``OUTLAST_CHAOS`` reaches boto3: connect, HTTP-status and latency faults under botocore.

Matrix: fault (connect_refused, connect_timeout, http_503, latency below / above the
read timeout) x pattern (matching the endpoint, matching another name). Invariant: a
fault planned for the endpoint's name is met by every wrapped call as the real fault
would be (the same botocore exception or status, the same retries, a FaultInjected
event per injection); a fault planned for another name changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import botocore.exceptions
import pytest
from aws_helpers import raw_client

import outlast
import outlast.aws
from outlast import Event, Resolver
from outlast.chaos import FaultInjected, parse_chaos
from outlast.chaos._urllib3 import Injector
from outlast.testing import DNSServer


def _client(
    fault_dns: DNSServer,
    resolver: Resolver,
    unique_name: Callable[[str], str],
    port: int,
    events: list[Event],
    **config: Any,
) -> tuple[Any, str]:
    name = unique_name("ddb")
    fault_dns.set(name, ["127.0.0.1"], ttl=60)
    client = outlast.aws.wrap(
        raw_client("dynamodb", f"http://{name}:{port}", **config),
        resolver=resolver,
        listeners=[events.append],
    )
    return client, name


def _injected(events: list[Event], fault: str) -> list[FaultInjected]:
    return [e for e in events if isinstance(e, FaultInjected) and e.fault == fault]


def test_the_issues_rehearsal_fails_every_boto3_call(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTLAST_CHAOS", "connect_refused=1.0,http_503=1.0,latency=5@1.0")
    monkeypatch.setenv("OUTLAST_RETRY_BASE", "0.01")
    events: list[Event] = []
    client, _ = _client(fault_dns, resolver_for(), unique_name, moto_port, events, read_timeout=0.3)
    served = 0
    for _ in range(2):
        try:
            client.list_tables()
            served += 1
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            pass
    assert served == 0
    # As for httpx, latency (here past the read timeout) and 503 stand in for the
    # whole attempt, before any connect.
    assert len(_injected(events, "latency")) >= 2  # each attempt (the budget may cut retries)


def test_connect_refused_is_met_as_a_refusal(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTLAST_CHAOS", "connect_refused=1.0@ddb-*")
    monkeypatch.setenv("OUTLAST_RETRY_BASE", "0.01")
    events: list[Event] = []
    client, name = _client(fault_dns, resolver_for(), unique_name, moto_port, events)
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        client.list_tables()
    refused = _injected(events, "connect_refused")
    assert len(refused) == 3  # one per attempt: outlast's policy retried it
    assert refused[0].host == name
    assert refused[0].target == f"127.0.0.1:{moto_port}"
    assert [e for e in events if e.kind == "http.address_failed"]


def test_connect_timeout_waits_out_the_connect_timeout(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTLAST_CHAOS", "connect_timeout=1.0")
    monkeypatch.setenv("OUTLAST_RETRY_ATTEMPTS", "1")
    events: list[Event] = []
    client, _ = _client(
        fault_dns, resolver_for(), unique_name, moto_port, events, connect_timeout=0.3
    )
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.ConnectTimeoutError):
        client.list_tables()
    assert time.monotonic() - started >= 0.25
    assert len(_injected(events, "connect_timeout")) == 1


def test_http_503_is_retried_as_a_real_503(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTLAST_CHAOS", "http_503=1.0")
    monkeypatch.setenv("OUTLAST_RETRY_BASE", "0.01")
    events: list[Event] = []
    client, _ = _client(fault_dns, resolver_for(), unique_name, moto_port, events)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.list_tables()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert caught.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(_injected(events, "http_503")) == 3


def test_latency_delays_and_past_the_read_timeout_times_out(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTLAST_CHAOS", "latency=0.3@1.0")
    events: list[Event] = []
    client, _ = _client(fault_dns, resolver_for(), unique_name, moto_port, events)
    started = time.monotonic()
    client.list_tables()
    assert time.monotonic() - started >= 0.3
    assert len(_injected(events, "latency")) == 1

    monkeypatch.setenv("OUTLAST_CHAOS", "latency=5@1.0")
    monkeypatch.setenv("OUTLAST_RETRY_ATTEMPTS", "1")
    slow, _ = _client(fault_dns, resolver_for(), unique_name, moto_port, events, read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        slow.list_tables()
    assert 0.25 <= time.monotonic() - started < 4


def test_a_fault_for_another_name_changes_nothing(
    fault_dns: DNSServer,
    resolver_for: Callable[..., Resolver],
    unique_name: Callable[[str], str],
    moto_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTLAST_CHAOS", "connect_refused=1.0@*.example,http_503=1.0@*.example")
    events: list[Event] = []
    client, _ = _client(fault_dns, resolver_for(), unique_name, moto_port, events)
    for _ in range(5):
        client.list_tables()
    assert not [e for e in events if isinstance(e, FaultInjected)]


def test_no_chaos_leaves_botocores_pool_classes() -> None:
    client = outlast.aws.wrap(raw_client("dynamodb", "http://127.0.0.1:1"))
    pool = client._endpoint.http_session._pool_classes_by_scheme["https"]
    assert "urlopen" not in {name for klass in pool.__mro__[:2] for name in vars(klass)}


def test_the_injector_rolls_per_attempt() -> None:
    plan = parse_chaos("http_503=0.5,seed=3")
    assert plan is not None
    slept: list[float] = []
    injector = Injector(plan, sleep=slept.append)

    class Pool:
        host, port, scheme, timeout = "h.example", 443, "https", None

    statuses = [
        injector.urlopen(Pool(), "GET", "/", lambda: "sent").__class__.__name__  # type: ignore[arg-type,return-value]
        for _ in range(40)
    ]
    assert 5 < statuses.count("str") < 35
    assert not slept


def test_without_chaos_the_urllib3_injector_is_not_loaded() -> None:
    import subprocess
    import sys

    code = (
        "import os, sys, boto3, outlast.aws\n"
        "os.environ.pop('OUTLAST_CHAOS', None)\n"
        "client = boto3.session.Session().client('dynamodb', endpoint_url='http://127.0.0.1:1',"
        " region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b')\n"
        "outlast.aws.wrap(client, resolver=outlast.Resolver(providers=['udp://127.0.0.1:1']))\n"
        "print('outlast.chaos._urllib3' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False"]
