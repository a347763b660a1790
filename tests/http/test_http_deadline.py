"""The caller's timeout is a deadline for the whole call, retries and waits included.

httpx's timeout (connect + read) bounds every request made through an outlast
transport: resolution counts against connect, no retry starts that cannot finish in
time, and a ``Retry-After`` longer than what remains (or than ``Retry.cap``) returns the
response at once. Each case is run sync and async, against loopback parts: a backend
answering 503, a port whose SYNs are dropped, a DNS server gone silent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from loopback_http import Backend, silent_address

import outlast
from outlast import Resolver
from outlast.http import AsyncTransport, Transport, classify_error, classify_result
from outlast.testing import DNSServer


def policy(*, attempts: int = 5, cap: float = 5.0) -> outlast.Policy:
    return outlast.Policy(
        retry=outlast.Retry(attempts=attempts, base=0.01, cap=cap),
        budget=None,
        breaker=None,
        classify_error=classify_error,
        classify_result=classify_result,
    )


def get(
    mode: str, resolver: Resolver, p: outlast.Policy, url: str, timeout: httpx.Timeout
) -> tuple[httpx.Response | Exception, float]:
    """GET ``url`` through an outlast transport; (response or error, seconds taken)."""
    started = time.monotonic()
    outcome: httpx.Response | Exception
    if mode == "sync":
        with httpx.Client(transport=Transport(resolver=resolver, policy=p), timeout=timeout) as c:
            try:
                outcome = c.get(url)
            except httpx.HTTPError as exc:
                outcome = exc
        return outcome, time.monotonic() - started

    async def main() -> httpx.Response | Exception:
        transport = AsyncTransport(resolver=resolver, policy=p)
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as c:
            try:
                return await c.get(url)
            except httpx.HTTPError as exc:
                return exc

    outcome = asyncio.run(main())
    return outcome, time.monotonic() - started


@pytest.fixture
def name(fault_dns: DNSServer, unique_name: Callable[[str], str]) -> str:
    host = unique_name("deadline")
    fault_dns.set(host, ["127.0.0.1"])
    return host


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("retry_after", ["3", "30"])
def test_a_retry_after_longer_than_what_remains_returns_the_response(
    name: str, resolver: Resolver, mode: str, retry_after: str
) -> None:
    # "3": longer than the 1 s the call has (timeout 0.5 = 0.5 connect + 0.5 read);
    # "30": longer than the policy's cap too. Sleeping less than asked is not an option.
    with Backend() as server:
        server.status = 503
        server.retry_after = retry_after
        outcome, took = get(
            mode, resolver, policy(), f"http://{name}:{server.port}/", httpx.Timeout(0.5)
        )
        assert isinstance(outcome, httpx.Response)
        assert outcome.status_code == 503
        assert outcome.headers["retry-after"] == retry_after
        assert server.hits == 1
        assert took < 0.9


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_silent_address_times_out_within_the_callers_timeout(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver: Resolver, mode: str
) -> None:
    host = unique_name("silent")
    fault_dns.set(host, ["127.0.0.3"])
    with silent_address("127.0.0.3") as port:
        # five attempts of 0.5 s each would take 2.5 s; one is all that fits in the 1 s
        outcome, took = get(mode, resolver, policy(), f"http://{host}:{port}/", httpx.Timeout(0.5))
    assert isinstance(outcome, httpx.ConnectTimeout)
    assert took < 1.2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_silent_dns_counts_against_the_connect_timeout(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver: Resolver, mode: str
) -> None:
    host = unique_name("nodns")
    fault_dns.fail("drop")
    outcome, took = get(mode, resolver, policy(), f"http://{host}:8/", httpx.Timeout(0.2))
    assert isinstance(outcome, httpx.ConnectError)
    assert took < 1.2  # the call has 0.4 s; the resolver alone would wait for seconds


def test_outlast_retry_deadline_bounds_a_call_without_a_timeout(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver: Resolver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OUTLAST_RETRY_DEADLINE", "0.6")
    settings = outlast.Retry.from_settings(outlast._config.Settings.from_env())
    assert settings.deadline == 0.6
    p = outlast.Policy(
        retry=outlast.Retry(attempts=9, base=0.01, cap=1.0, deadline=0.6),
        budget=None,
        breaker=None,
        classify_error=classify_error,
        classify_result=classify_result,
    )
    host = unique_name("silent")
    fault_dns.set(host, ["127.0.0.3"])
    with silent_address("127.0.0.3") as port:
        outcome, took = get(
            "sync", resolver, p, f"http://{host}:{port}/", httpx.Timeout(None, connect=0.3)
        )
    assert isinstance(outcome, httpx.ConnectTimeout)
    assert took < 1.2  # nine attempts of 0.3 s would take 2.7 s


def test_the_request_keeps_its_own_timeouts(name: str, resolver: Resolver) -> None:
    with Backend() as server:
        server.script.extend([503, 200])
        with httpx.Client(
            transport=Transport(resolver=resolver, policy=policy()), timeout=httpx.Timeout(2.0)
        ) as client:
            response = client.get(f"http://{name}:{server.port}/")
            assert response.status_code == 200
            assert response.request.extensions["timeout"] == httpx.Timeout(2.0).as_dict()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_retry_whose_deadline_passed_in_the_backoff_is_not_sent(
    name: str, resolver: Resolver, mode: str
) -> None:
    """The backoff overran the call's deadline (a busy thread or loop: here a sleep that
    takes 0.6 s when asked for 0.01 s, against a 0.4 s deadline). The retry is not sent
    with a token 1 ms timeout, to fail and be counted against the backend: it is cut
    before it leaves (``httpx.TimeoutException``, neutral), and the one 503 is the
    call's only failure (before: a second hit, and a second failure counted)."""

    def overrun(seconds: float) -> None:
        time.sleep(0.6)

    async def aoverrun(seconds: float) -> None:
        await asyncio.sleep(0.6)

    p = outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.01, cap=0.01),
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=30, min_reset=30, max_wait=0),
        classify_error=classify_error,
        classify_result=classify_result,
        sleep=overrun,
        asleep=aoverrun,
    )
    with Backend() as server:
        server.status = 503
        url = f"http://{name}:{server.port}/"
        outcome, _ = get(mode, resolver, p, url, httpx.Timeout(0.2))
        hits = server.hits
    assert isinstance(outcome, httpx.TimeoutException), (outcome, hits, p.snapshot())
    assert "deadline" in str(outcome)
    assert hits == 1  # the retry never left
    (state,) = [k for k in p.snapshot().keys if k.key == f"http://{name}:{server.port}"]
    assert state.failures == 1  # the 503 alone


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_retry_cut_at_the_deadline_is_neutral_under_the_users_own_classifier(
    name: str, resolver: Resolver, mode: str
) -> None:
    """docs/httpx.md: with your own ``policy=`` "the transport keeps the HTTP rules on
    top", and a retry cut because its backoff overran the deadline "counts neither for
    nor against the origin". With the default ``retry_all`` (no classifiers given) the
    cut ``httpx.TimeoutException`` was an unwell failure: a dropped connection and a
    busy thread opened a ``failures=2`` breaker in one call, as before the cut."""
    from loopback_http import DROP

    def overrun(seconds: float) -> None:
        time.sleep(0.6)

    async def aoverrun(seconds: float) -> None:
        await asyncio.sleep(0.6)

    p = outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.01, cap=0.01),
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=30, min_reset=30, max_wait=0),
        sleep=overrun,
        asleep=aoverrun,
    )
    with Backend() as server:
        server.status = DROP  # read the GET, close without answering: retried
        url = f"http://{name}:{server.port}/"
        outcome, _ = get(mode, resolver, p, url, httpx.Timeout(0.2))
        hits = server.hits
    assert isinstance(outcome, httpx.TimeoutException), (outcome, hits)
    assert "deadline" in str(outcome)
    assert hits == 1  # the retry never left
    (state,) = [k for k in p.snapshot().keys if k.key == f"http://{name}:{server.port}"]
    assert state.failures == 1, p.snapshot()  # the dropped connection alone
    assert state.state == "closed"


def test_a_retry_cut_at_the_deadline_as_the_half_open_probe_frees_the_probe(
    name: str, resolver: Resolver
) -> None:
    """During the overrun backoff another thread's 503 opens the breaker and its
    0.1 s opening passes: the retry, let through after the wait, is the half-open
    probe. Cut before it is sent, it must free the probe slot (not settle it, not hold
    it): the next call is the probe and reaches the backend."""
    threading = __import__("threading")
    main = threading.current_thread()
    url_of: list[str] = []

    def overrun(seconds: float) -> None:
        if threading.current_thread() is main:
            other = threading.Thread(target=lambda: client.get(url_of[0]))
            other.start()
            other.join(5)
            time.sleep(0.6)

    p = outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.01, cap=0.01),
        budget=None,
        breaker=outlast.CircuitBreaker(failures=2, reset=0.1, min_reset=0.1, max_wait=0),
        classify_error=classify_error,
        classify_result=classify_result,
        sleep=overrun,
    )
    with (
        Backend() as server,
        httpx.Client(
            transport=Transport(resolver=resolver, policy=p), timeout=httpx.Timeout(0.2)
        ) as client,
    ):
        server.status = 503
        url_of.append(f"http://{name}:{server.port}/")
        with pytest.raises(httpx.TimeoutException, match="deadline"):
            client.get(url_of[0])
        assert server.hits == 2  # the first attempt and the other thread's
        key = f"http://{name}:{server.port}"
        assert p.for_key(key).state == "half-open"
        server.status = 200
        assert client.get(url_of[0]).status_code == 200  # the probe: let through
        assert server.hits == 3
        assert p.for_key(key).state == "closed"
