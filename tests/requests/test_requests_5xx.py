"""5xx through ``outlast.requests``: the rules of ``outlast.http``.

Cells (status x method) and the invariant: 500/502/503/504 are retried when the
request is safe (GET; a POST never twice); every 5xx but 501 and 505 counts against
the origin's breaker, so a backend answering 500 to every call opens it (before, 500
and the 5xx outside 502-504 were taken as successes: the breaker never opened). A
proxy that fails is neutral: neither the target's failure nor its success.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import requests
from loopback_http import Backend
from requests_helpers import quick_policy

from outlast import Resolver
from outlast.requests import CircuitOpenError, Session
from outlast.testing import DNSServer


@pytest.fixture
def name(fault_dns: DNSServer, unique_name: Callable[[str], str]) -> str:
    made = unique_name("fivexx")
    fault_dns.set(made, ["127.0.0.1"], ttl=30)
    return made


@pytest.mark.parametrize("status", [500, 507])
def test_a_backend_failing_every_call_opens_the_breaker_without_repeating_a_post(
    name: str, resolver_for: Callable[..., Resolver], status: int
) -> None:
    policy = quick_policy(breaker=True)  # opens after 2 failures
    with Backend() as server, Session(resolver=resolver_for(), policy=policy) as session:
        server.status = status
        url = f"http://{name}:{server.port}/"
        assert [session.post(url, data=b"x").status_code for _ in range(2)] == [status] * 2
        assert server.hits == 2  # a POST answered 5xx is not sent again
        with pytest.raises(CircuitOpenError):
            session.post(url, data=b"x")
        assert server.hits == 2


def test_a_500_to_a_get_is_retried(name: str, resolver_for: Callable[..., Resolver]) -> None:
    with Backend() as server, Session(resolver=resolver_for(), policy=quick_policy()) as s:
        server.script.extend([500])
        assert s.get(f"http://{name}:{server.port}/").status_code == 200
        assert server.hits == 2


@pytest.mark.parametrize("status", [501, 505])
def test_501_and_505_are_not_held_against_the_backend(
    name: str, resolver_for: Callable[..., Resolver], status: int
) -> None:
    policy = quick_policy(breaker=True)
    with Backend() as server, Session(resolver=resolver_for(), policy=policy) as session:
        server.status = status
        url = f"http://{name}:{server.port}/"
        assert [session.get(url).status_code for _ in range(4)] == [status] * 4
        assert server.hits == 4


@pytest.fixture
def dead_proxy() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_proxy_failure_neither_counts_nor_resets_the_targets_count(
    name: str, resolver_for: Callable[..., Resolver], dead_proxy: str
) -> None:
    # failures=2: 500, (proxy down), 500 is two failures in a row for the target; the
    # proxy's error says nothing about it (before, it was taken as the target's success).
    policy = quick_policy(breaker=True)
    with Backend() as server, Session(resolver=resolver_for(), policy=policy) as session:
        server.status = 500
        url = f"http://{name}:{server.port}/"
        assert session.post(url, data=b"x").status_code == 500
        with pytest.raises(requests.exceptions.ProxyError):
            session.post(url, data=b"x", proxies={"http": dead_proxy})
        assert session.post(url, data=b"x").status_code == 500
        with pytest.raises(CircuitOpenError):
            session.post(url, data=b"x")
        assert server.hits == 2
