"""Policies per origin through the transports, against a real scripted HTTP server.

What is retried (connect failures always; read failures and 502/503/504 only when the
request is safe to repeat), Retry-After, closing a failed response before the retry,
the budget and the breaker (open: an error that is httpx's and outlast's, no socket).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from loopback_http import DROP, STALL, Backend, ConnectProxy

import outlast
from outlast import Event, Resolver
from outlast.http import (
    AddressFailed,
    AsyncTransport,
    CircuitOpenError,
    Transport,
    classify_error,
    classify_result,
)
from outlast.policy import Decision, Outcome
from outlast.testing import DNSServer, force_open


def http_policy(
    *,
    attempts: int = 3,
    budget: outlast.RetryBudget | None = None,
    breaker: outlast.CircuitBreaker | None = None,
) -> outlast.Policy:
    return outlast.Policy(
        retry=outlast.Retry(attempts=attempts, base=0.01, cap=1.0),
        budget=budget,
        breaker=breaker,
        classify_error=classify_error,
        classify_result=classify_result,
    )


@pytest.fixture
def name(fault_dns: DNSServer, unique_name: Callable[[str], str]) -> str:
    host = unique_name("api")
    fault_dns.set(host, ["127.0.0.1"])
    return host


def test_503_everywhere_opens_the_breaker_and_hits_stay_within_budget(
    name: str, resolver: Resolver
) -> None:
    # Refused at once for the whole 0.3 s (no first 0.05 s opening, no waiting out the
    # interval's end): how many of 100 calls are refused must not depend on how fast this
    # machine makes them.
    policy = http_policy(
        budget=outlast.RetryBudget(),
        breaker=outlast.CircuitBreaker(failures=5, reset=0.3, min_reset=0.3, max_wait=0),
    )
    calls, statuses = 0, []
    refused: list[CircuitOpenError] = []
    with Backend() as server:
        server.status = 503
        with httpx.Client(transport=Transport(resolver=resolver, policy=policy)) as client:
            url = f"http://{name}:{server.port}/"
            for _ in range(100):
                calls += 1
                try:
                    statuses.append(client.get(url).status_code)
                except CircuitOpenError as exc:
                    refused.append(exc)
            hits_while_failing = server.hits
            assert policy.for_key(f"http://{name}:{server.port}").state == "open"

            server.status = 200  # the backend heals; after the reset one probe closes it
            time.sleep(0.35)
            healed = client.get(url)
            after = client.get(url)
    assert hits_while_failing <= 1.1 * calls
    assert statuses
    assert set(statuses) == {503}  # when attempts run out the last 503 is returned
    assert len(refused) >= 90
    assert all(isinstance(e, httpx.TransportError) for e in refused)
    assert all(isinstance(e, outlast.OutlastError) for e in refused)
    assert (healed.status_code, after.status_code) == (200, 200)
    assert policy.for_key(f"http://{name}:{server.port}").state == "closed"


@pytest.mark.parametrize(
    ("budget", "most"),
    [(outlast.RetryBudget(ratio=0.1, floor=0, window=60), 1.1), (None, 3.0)],
    ids=["budget", "no-budget"],
)
def test_the_budget_alone_bounds_the_hits_on_a_failing_backend(
    name: str, resolver: Resolver, budget: outlast.RetryBudget | None, most: float
) -> None:
    # The breaker cannot open here, so only the budget stands between 100 calls and
    # 300 hits (the no-budget run shows it).
    never_opens = outlast.CircuitBreaker(failures=10_000, reset=60, min_reset=60)
    policy = http_policy(budget=budget, breaker=never_opens)
    calls = 100
    with Backend() as server:
        server.status = 503
        with httpx.Client(transport=Transport(resolver=resolver, policy=policy)) as client:
            statuses = {
                client.get(f"http://{name}:{server.port}/").status_code for _ in range(calls)
            }
    assert statuses == {503}
    assert policy.for_key(f"http://{name}:{server.port}").state == "closed"
    assert calls < server.hits <= most * calls


def test_attempts_exhausted_returns_the_last_response_and_closed_the_others(
    name: str, resolver: Resolver
) -> None:
    # One connection allowed: had a failed response been left open, the retry would
    # wait for the pool and fail with PoolTimeout.
    transport = Transport(
        resolver=resolver, policy=http_policy(), limits=httpx.Limits(max_connections=1)
    )
    with Backend() as server:
        server.status = 503
        timeout = httpx.Timeout(5.0, pool=1.0)
        with httpx.Client(transport=transport, timeout=timeout) as client:
            response = client.get(f"http://{name}:{server.port}/x")
            assert response.text == "GET /x"  # the last response is readable
    assert response.status_code == 503
    assert server.hits == 3


@pytest.mark.parametrize(
    ("method", "headers", "hits"),
    [
        ("GET", {}, 3),
        ("PUT", {}, 3),
        ("DELETE", {}, 3),
        ("TRACE", {}, 3),  # safe, so idempotent (RFC 9110, section 9.2.2)
        ("POST", {}, 1),
        ("PATCH", {}, 1),
        ("POST", {"Idempotency-Key": "k-1"}, 3),
    ],
)
def test_503_retried_only_when_safe(
    name: str, resolver: Resolver, method: str, headers: dict[str, str], hits: int
) -> None:
    with Backend() as server:
        server.status = 503
        transport = Transport(resolver=resolver, policy=http_policy())
        with httpx.Client(transport=transport) as client:
            response = client.request(
                method, f"http://{name}:{server.port}/", content=b"body", headers=headers
            )
    assert response.status_code == 503
    assert server.hits == hits


def test_a_body_that_cannot_be_replayed_is_not_retried(name: str, resolver: Resolver) -> None:
    def body() -> Iterator[bytes]:
        yield b"chunk"

    with Backend() as server:
        server.status = 503
        transport = Transport(resolver=resolver, policy=http_policy())
        with httpx.Client(transport=transport) as client:
            response = client.put(f"http://{name}:{server.port}/", content=body())
    assert response.status_code == 503
    assert server.hits == 1


def test_retry_after_is_honoured(name: str, resolver: Resolver) -> None:
    with Backend() as server:
        server.script.append(503)
        server.retry_after = "0.4"
        with httpx.Client(transport=Transport(resolver=resolver, policy=http_policy())) as c:
            start = time.monotonic()
            response = c.get(f"http://{name}:{server.port}/")
            took = time.monotonic() - start
    assert response.status_code == 200
    assert server.hits == 2
    assert 0.4 <= took < 1.0  # waited the server's 0.4 s, not the 10 ms jitter


def test_read_failure_retried_for_get_not_for_post(name: str, resolver: Resolver) -> None:
    transport = Transport(resolver=resolver, policy=http_policy())
    with Backend() as server, httpx.Client(transport=transport) as c:
        server.script.append(DROP)
        got = c.get(f"http://{name}:{server.port}/")
        assert server.hits == 2
        server.script.append(DROP)
        with pytest.raises(httpx.RemoteProtocolError):
            c.post(f"http://{name}:{server.port}/", content=b"x")
    assert got.status_code == 200
    assert server.hits == 3  # the POST went once


def test_connect_failure_retried_even_for_post(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver: Resolver
) -> None:
    host = unique_name("down")
    fault_dns.set(host, ["127.0.0.2"])
    events: list[Event] = []
    transport = Transport(resolver=resolver, policy=http_policy(), listeners=[events.append])
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError):
        client.post(f"http://{host}:9/", content=b"x")
    assert sum(isinstance(e, AddressFailed) for e in events) == 3  # the request never left


def test_open_breaker_raises_at_once_without_touching_the_network(
    name: str, resolver: Resolver
) -> None:
    policy = http_policy(breaker=outlast.CircuitBreaker(failures=1, reset=60, min_reset=60))
    transport = Transport(resolver=resolver, policy=policy)
    with Backend() as server, httpx.Client(transport=transport) as client:
        origin = f"http://{name}:{server.port}"
        with force_open(policy.for_key(origin)), pytest.raises(httpx.ConnectError) as info:
            client.get(f"{origin}/")
        assert server.connections == 0
        assert client.get(f"http://{name}:{server.port}/").status_code == 200
    error = info.value
    assert isinstance(error, outlast.CircuitOpenError)
    assert isinstance(error.__cause__, outlast.CircuitOpenError)
    assert error.request.url.host == name


def test_async_503_breaker_and_last_response(name: str, resolver: Resolver) -> None:
    policy = http_policy(
        budget=outlast.RetryBudget(),
        breaker=outlast.CircuitBreaker(failures=5, reset=60, min_reset=60),
    )

    async def main(port: int) -> tuple[list[int], int]:
        statuses, refused = [], 0
        transport = AsyncTransport(
            resolver=resolver, policy=policy, limits=httpx.Limits(max_connections=1)
        )
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5, pool=1)) as c:
            for _ in range(50):
                try:
                    statuses.append((await c.get(f"http://{name}:{port}/")).status_code)
                except CircuitOpenError:
                    refused += 1
        return statuses, refused

    with Backend() as server:
        server.status = 503
        statuses, refused = asyncio.run(main(server.port))
    assert set(statuses) == {503}
    assert refused >= 45
    assert server.hits <= 1.1 * 50


def test_a_custom_policy_does_not_repeat_a_post_whose_read_timed_out(
    name: str, resolver: Resolver
) -> None:
    # retry_all (the Policy default) would retry anything; the transport's HTTP rules
    # still refuse to send again a request the server may have acted on.
    policy = outlast.Policy(retry=outlast.Retry(attempts=3, base=0.01), budget=None, breaker=None)
    transport = Transport(resolver=resolver, policy=policy)
    timeout = httpx.Timeout(5.0, read=0.3)
    with Backend() as server, httpx.Client(transport=transport, timeout=timeout) as client:
        url = f"http://{name}:{server.port}/"
        server.script.append(STALL)
        with pytest.raises(httpx.ReadTimeout):
            client.post(url, content=b"charge the card")
        assert server.hits == 1  # sent once
        server.script.append(STALL)
        keyed = client.post(url, content=b"x", headers={"Idempotency-Key": "k-2"})
        assert server.hits == 3  # retry-safe: stalled, then answered
        server.script.append(STALL)
        got = client.get(url)
        assert server.hits == 5
    assert (keyed.status_code, got.status_code) == (200, 200)


def test_a_custom_result_classifier_does_not_repeat_a_post(name: str, resolver: Resolver) -> None:
    def retry_5xx(outcome: Outcome, /) -> Decision:
        response = outcome.result
        if isinstance(response, httpx.Response) and response.status_code >= 500:
            return Decision.TRANSIENT
        return Decision.ACCEPT

    policy = outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.01),
        budget=None,
        breaker=None,
        classify_result=retry_5xx,
    )

    def body() -> Iterator[bytes]:
        yield b"streamed"

    transport = Transport(resolver=resolver, policy=policy)
    with Backend() as server, httpx.Client(transport=transport) as client:
        server.status = 500
        url = f"http://{name}:{server.port}/"
        assert client.post(url, content=b"x").status_code == 500
        assert server.hits == 1
        assert client.put(url, content=body()).status_code == 500  # body not replayable
        assert server.hits == 2
        assert client.put(url, content=b"x").status_code == 500
        assert server.hits == 5


@pytest.mark.parametrize(
    "policy_of", [http_policy, outlast.Policy], ids=["http-classifiers", "retry_all"]
)
def test_a_proxy_refusing_the_tunnel_is_not_retried_nor_held_against_the_target(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    name: str,
    resolver: Resolver,
    policy_of: Callable[..., outlast.Policy],
) -> None:
    proxy_name = unique_name("proxy")
    fault_dns.set(proxy_name, ["127.0.0.1"])
    policy = policy_of(
        breaker=outlast.CircuitBreaker(failures=1, reset=60, min_reset=60), budget=None
    )
    with ConnectProxy() as proxy:
        proxy.refuse = 407
        transport = Transport(
            resolver=resolver, policy=policy, proxy=f"http://{proxy_name}:{proxy.port}"
        )
        with httpx.Client(transport=transport) as client, pytest.raises(httpx.ProxyError):
            client.get(f"https://{name}:8443/")
    assert proxy.targets == [f"{name}:8443"]  # one CONNECT: not retried
    assert policy.for_key(f"https://{name}:8443").state == "closed"  # not the target's fault


# -- verdicts: a breaker counts what the destination did, nothing else ------------------


def test_a_pool_timeout_neither_counts_nor_resets_the_count(
    fault_dns: DNSServer, name: str, resolver: Resolver
) -> None:
    # One pool connection: held open to another origin, every request to ``name`` waits
    # for it and fails with PoolTimeout. That says nothing about ``name``'s backend.
    other = f"other-{name}"
    fault_dns.set(other, ["127.0.0.1"])
    policy = http_policy(attempts=1, breaker=outlast.CircuitBreaker(failures=2, reset=0.2))
    transport = Transport(resolver=resolver, policy=policy, limits=httpx.Limits(max_connections=1))
    timeout = httpx.Timeout(5.0, read=0.3, pool=0.05)
    with Backend() as server, Backend() as holder:
        url, key = f"http://{name}:{server.port}/", f"http://{name}:{server.port}"
        with httpx.Client(transport=transport, timeout=timeout) as client:
            server.script.append(STALL)
            with pytest.raises(httpx.ReadTimeout):
                client.get(url)
            with (
                client.stream("GET", f"http://{other}:{holder.port}/"),
                pytest.raises(httpx.PoolTimeout),
            ):
                client.get(url)
            assert policy.for_key(key).state == "closed"
            server.script.append(STALL)
            with pytest.raises(httpx.ReadTimeout):
                client.get(url)
            # Two failures of the backend, with a pool timeout between them: open.
            assert policy.for_key(key).state == "open"
            time.sleep(0.25)
            with (
                client.stream("GET", f"http://{other}:{holder.port}/"),
                pytest.raises(httpx.PoolTimeout),  # the probe never reached the backend
            ):
                client.get(url)
            assert policy.for_key(key).state == "half-open"  # not closed by it
            assert client.get(url).status_code == 200  # the freed probe slot: a real probe
            assert policy.for_key(key).state == "closed"


def test_a_backend_answering_500_opens_the_breaker_without_repeating_a_post(
    name: str, resolver: Resolver
) -> None:
    policy = http_policy(breaker=outlast.CircuitBreaker(failures=5, reset=5, min_reset=5))
    with Backend() as server:
        server.status = 500
        url, key = f"http://{name}:{server.port}/", f"http://{name}:{server.port}"
        with httpx.Client(transport=Transport(resolver=resolver, policy=policy)) as client:
            statuses = []
            for _ in range(5):
                statuses.append(client.post(url, content=b"x").status_code)
            assert statuses == [500] * 5
            assert server.hits == 5  # a POST answered 500 is not sent again
            assert policy.for_key(key).state == "open"
            with pytest.raises(CircuitOpenError):
                client.post(url, content=b"x")


@pytest.mark.parametrize("status", [501, 505])
def test_501_and_505_are_not_held_against_the_backend(
    name: str, resolver: Resolver, status: int
) -> None:
    policy = http_policy(breaker=outlast.CircuitBreaker(failures=2, reset=5))
    with Backend() as server:
        server.status = status
        url, key = f"http://{name}:{server.port}/", f"http://{name}:{server.port}"
        with httpx.Client(transport=Transport(resolver=resolver, policy=policy)) as client:
            assert [client.get(url).status_code for _ in range(4)] == [status] * 4
            assert server.hits == 4  # not retried either
            assert policy.for_key(key).state == "closed"


def test_a_500_to_a_get_is_retried(name: str, resolver: Resolver) -> None:
    with Backend() as server:
        server.script.extend([500, 200])
        transport = Transport(resolver=resolver, policy=http_policy())
        with httpx.Client(transport=transport) as client:
            assert client.get(f"http://{name}:{server.port}/").status_code == 200
            assert server.hits == 2


def test_callers_waiting_on_retry_after_get_the_429_not_a_circuit_error(
    name: str, resolver: Resolver
) -> None:
    # 20 callers, a server pacing every one of them: the budget lets some retry and the
    # others get the 429 (and its Retry-After) at once; no breaker refused anything.
    import concurrent.futures

    policy = outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.01, cap=5.0),
        budget=outlast.RetryBudget(),
        breaker=outlast.CircuitBreaker(),
        classify_error=classify_error,
        classify_result=classify_result,
    )
    with Backend() as server:
        server.status = 429
        server.retry_after = "0.3"
        url = f"http://{name}:{server.port}/"
        transport = Transport(
            resolver=resolver, policy=policy, limits=httpx.Limits(max_connections=40)
        )
        with httpx.Client(transport=transport) as client:

            def one(_: int) -> object:
                try:
                    return client.get(url).status_code
                except CircuitOpenError as exc:
                    return exc

            with concurrent.futures.ThreadPoolExecutor(20) as pool:
                outcomes = list(pool.map(one, range(20)))
        assert outcomes == [429] * 20
        assert policy.for_key(f"http://{name}:{server.port}").state == "closed"
        # 20 calls, at most 0.1 * 20 + 10 (the floor) retries
        assert server.hits <= 20 + 12


def test_async_500_opens_the_breaker_and_429_waiters_get_their_429(
    name: str, resolver: Resolver
) -> None:
    async def main() -> None:
        policy = outlast.Policy(
            retry=outlast.Retry(attempts=3, base=0.01, cap=5.0),
            budget=outlast.RetryBudget(),
            breaker=outlast.CircuitBreaker(failures=5, reset=5),
            classify_error=classify_error,
            classify_result=classify_result,
        )
        transport = AsyncTransport(
            resolver=resolver, policy=policy, limits=httpx.Limits(max_connections=40)
        )
        async with httpx.AsyncClient(transport=transport) as client:
            with Backend() as server:  # 20 tasks paced by 429 Retry-After
                server.status = 429
                server.retry_after = "0.3"
                url = f"http://{name}:{server.port}/"

                async def one() -> object:
                    try:
                        return (await client.get(url)).status_code
                    except CircuitOpenError as exc:
                        return exc

                outcomes = await asyncio.gather(*(one() for _ in range(20)))
                assert outcomes == [429] * 20
                assert server.hits <= 20 + 12
            with Backend() as server:  # every POST answered 500: counted, not repeated
                server.status = 500
                url, key = f"http://{name}:{server.port}/", f"http://{name}:{server.port}"
                for _ in range(5):
                    assert (await client.post(url, content=b"x")).status_code == 500
                assert server.hits == 5
                assert policy.for_key(key).state == "open"

    asyncio.run(main())


def test_the_issue_input_20_threads_default_client_429_retry_after_1() -> None:
    # As filed: default outlast.Client(), 20 threads, "429 Retry-After: 1" to everything.
    # 16 of 20 used to get CircuitOpenError from a closed breaker.
    import concurrent.futures

    with Backend() as server, outlast.Client() as client:
        server.status = 429
        server.retry_after = "1"
        url = f"http://127.0.0.1:{server.port}/"

        def one(_: int) -> object:
            try:
                return client.get(url).status_code
            except CircuitOpenError as exc:
                return exc

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            outcomes = list(pool.map(one, range(20)))
    assert outcomes == [429] * 20
