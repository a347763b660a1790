"""The success path of a kept-alive request stays cheap, and its shortcuts stay exact.

The transports keep a route per origin (the policy's view bound to the origin's guard,
with the deadline of the request's timeouts), put a request's attempts where the
policy's sleep finds them only once a response may be retried, and hand a request's
``sni_hostname`` to the dial that opens its connection. Each shortcut is checked
against what it replaces: the registry's eviction and recency (``for_key``), a
per-request timeout, an unbounded phase, a custom classifier that retries a 2xx, SNI.
The cost is counted in Python calls per request (``sys.setprofile``), which is the same
on any machine: outlast's calls over plain httpx's on the same kept-alive connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trustme
from calls import counting
from loopback_http import Backend, client_context

import outlast
from outlast import Resolver
from outlast.http import AsyncTransport, Transport, classify_error, classify_result
from outlast.policy import Decision, Outcome
from outlast.testing import DNSServer

ONE = httpx.Limits(max_connections=1)

#: Python calls (frames and C functions) one kept-alive GET through ``outlast.Transport``
#: may make beyond plain httpx's: 15 once the hot path was cut (57 before).
EXTRA_CALLS_ALLOWED = 35


def _calls_per_request(client: httpx.Client, url: str, n: int = 100) -> float:
    """Python and C function calls per ``client.get(url)`` on a warm connection."""
    assert client.get(url).status_code == 200  # warm: resolve, connect
    with counting() as count:
        for _ in range(n):
            client.get(url)
    return count[0] / n


def test_a_kept_alive_request_costs_few_calls_over_plain_httpx(
    fault_dns: DNSServer, resolver_for: Callable[..., Resolver]
) -> None:
    # The name is as long as the address plain httpx is given: httpx checks a URL's
    # every character, so only outlast's own calls make the difference.
    name = "hot1.test"
    assert len(name) == len("127.0.0.1")
    fault_dns.set(name, ["127.0.0.1"])
    with Backend() as server:
        with httpx.Client(transport=httpx.HTTPTransport()) as plain:
            baseline = _calls_per_request(plain, f"http://127.0.0.1:{server.port}/")
        transport = Transport(resolver=resolver_for())
        with httpx.Client(transport=transport) as ours:
            calls = _calls_per_request(ours, f"http://{name}:{server.port}/")
    assert server.connections == 2  # one kept-alive connection each
    assert calls - baseline <= EXTRA_CALLS_ALLOWED, (calls, baseline)


# -- the route per origin ----------------------------------------------------------------


def _unwell_policy(**options: Any) -> outlast.Policy:
    return outlast.Policy(
        retry=None,
        budget=None,
        breaker=outlast.CircuitBreaker(failures=5, reset=60, min_reset=60),
        classify_error=classify_error,
        classify_result=classify_result,
        **options,
    )


def _failures(policy: outlast.Policy, key: str) -> int | None:
    for state in policy.snapshot().keys:
        if state.key == key:
            return state.failures
    return None


def test_a_route_follows_the_registry_when_its_origin_is_evicted(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    a, b = unique_name("evict-a"), unique_name("evict-b")
    for name in (a, b):
        fault_dns.set(name, ["127.0.0.1"])
    policy = _unwell_policy(max_keys=1)
    transport = Transport(resolver=resolver_for(), policy=policy)
    with Backend() as server, httpx.Client(transport=transport) as client:
        server.status = 500  # counted against the origin's breaker
        origin_a = f"http://{a}:{server.port}"
        client.get(f"{origin_a}/")
        assert _failures(policy, origin_a) == 1
        client.get(f"http://{b}:{server.port}/")  # a's key is evicted (max_keys=1)
        assert _failures(policy, origin_a) is None
        client.get(f"{origin_a}/")  # counted by the key's guard made afresh, as for_key
    assert _failures(policy, origin_a) == 1


def test_a_route_touches_its_key_so_a_busy_origin_is_not_evicted(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    a, b, c = unique_name("lru-a"), unique_name("lru-b"), unique_name("lru-c")
    for name in (a, b, c):
        fault_dns.set(name, ["127.0.0.1"])
    policy = _unwell_policy(max_keys=2)
    transport = Transport(resolver=resolver_for(), policy=policy)
    with Backend() as server, httpx.Client(transport=transport) as client:
        server.status = 500
        origin = {name: f"http://{name}:{server.port}" for name in (a, b, c)}
        for name in (a, b, a, c):  # a was used after b: c evicts b
            client.get(f"{origin[name]}/")
    assert _failures(policy, origin[a]) == 2
    assert _failures(policy, origin[b]) is None
    assert _failures(policy, origin[c]) == 1


def test_each_request_gets_the_deadline_of_its_own_timeout(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("deadline")
    fault_dns.set(name, ["127.0.0.1"])
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    policy = outlast.Policy(
        retry=outlast.Retry(attempts=2, base=0.01, cap=5.0),
        budget=None,
        breaker=None,
        classify_error=classify_error,
        classify_result=classify_result,
        sleep=sleep,
    )
    transport = Transport(resolver=resolver_for(), policy=policy)
    with Backend() as server, httpx.Client(transport=transport) as client:
        url = f"http://{name}:{server.port}/"
        server.script.extend([503, 200])
        server.retry_after = "0.3"
        assert client.get(url, timeout=5.0).status_code == 200  # waited 0.3 s, retried
        assert server.hits == 2
        server.script.append(503)
        late = client.get(url, timeout=0.1)  # 0.2 s in all: the server's 0.3 s is too long
    assert late.status_code == 503
    assert server.hits == 3  # returned at once, not retried after 0.3 s
    assert slept == [0.3]  # the first call's wait only: the second did not wait


@pytest.mark.timeout(30)
def test_an_unbounded_phase_of_the_first_attempt_ends_by_the_deadline(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    # pool=None would wait for the pool's only connection for ever; the call's deadline
    # (connect + read = 0.4 s) bounds it, from the first attempt on.
    name = unique_name("unbounded")
    fault_dns.set(name, ["127.0.0.1"])
    transport = Transport(resolver=resolver_for(), limits=ONE)
    timeout = httpx.Timeout(connect=0.2, read=0.2, write=None, pool=None)
    with Backend() as server, httpx.Client(transport=transport) as client:
        url = f"http://{name}:{server.port}/"
        with client.stream("GET", url) as held:  # holds the only connection
            assert held.status_code == 200
            started = time.monotonic()
            with pytest.raises(httpx.PoolTimeout):
                client.get(url, timeout=timeout)
            took = time.monotonic() - started
    assert took < 5.0


# -- where the policy's sleep finds the response to free ----------------------------------


def _retry_first_response(outcome: Outcome, /) -> Decision:
    """A custom classifier: the first response to ``/`` is retried, whatever its status."""
    if outcome.error is not None:
        return classify_error(outcome)
    response = outcome.result
    assert isinstance(response, httpx.Response)
    return Decision(retry=outcome.attempt == 1 and response.request.url.path == "/")


def test_a_custom_classifier_retrying_a_2xx_frees_it_before_the_backoff(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    name = unique_name("custom")
    fault_dns.set(name, ["127.0.0.1"])
    during: list[int] = []
    client: httpx.Client

    def sleep(seconds: float) -> None:
        # Inside the backoff, the pool's only connection must be free again.
        during.append(client.get(f"http://{name}:{server.port}/during").status_code)

    policy = outlast.Policy(
        retry=outlast.Retry(attempts=2, base=0.01, cap=5.0),
        budget=None,
        breaker=None,
        classify_error=classify_error,
        classify_result=_retry_first_response,
        sleep=sleep,
    )
    transport = Transport(resolver=resolver_for(), policy=policy, limits=ONE)
    timeout = httpx.Timeout(5.0, pool=0.5)
    with Backend() as server, httpx.Client(transport=transport, timeout=timeout) as client:
        response = client.get(f"http://{name}:{server.port}/")
    assert during == [200]
    assert response.status_code == 200
    assert server.hits == 3  # the first, the one made in the backoff, the retry


# -- a request's sni_hostname ---------------------------------------------------------------


def test_sni_hostname_names_the_handshake_sync_and_async(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    ca: trustme.CA,
    resolver_for: Callable[..., Resolver],
) -> None:
    name, other = unique_name("sni"), unique_name("sni-other")
    fault_dns.set(name, ["127.0.0.1"])
    sni = {"sni_hostname": other}
    with Backend(cert=ca.issue_cert(other)) as server:
        url = f"https://{name}:{server.port}/"
        transport = Transport(verify=client_context(ca), resolver=resolver_for())
        with httpx.Client(transport=transport) as client:
            first = client.get(url, extensions=sni)
            again = client.get(url)  # the same connection, no new handshake

        async def main() -> int:
            transport = AsyncTransport(verify=client_context(ca), resolver=resolver_for())
            async with httpx.AsyncClient(transport=transport) as client:
                return (await client.get(url, extensions=sni)).status_code

        status = asyncio.run(main())
    assert (first.status_code, again.status_code, status) == (200, 200, 200)
    assert server.sni == [other, other]
    assert server.connections == 2


# -- the transports' own response classifier, fused ---------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_the_fused_response_classifier_agrees_with_the_composed_one(method: str) -> None:
    from outlast.http._rules import _http_result, _vetoed

    for status in range(100, 600):
        request = httpx.Request(method, "http://h.test/")
        headers = {"retry-after": "1"} if status in (429, 503) else {}
        response = httpx.Response(status, headers=headers, request=request)
        outcome = Outcome(1, result=response)
        assert _http_result(outcome) == _vetoed(classify_result(outcome), outcome), status
