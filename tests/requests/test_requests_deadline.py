"""requests' timeout is a deadline for the whole call through outlast, retries included.

As with ``outlast.http``: a ``timeout`` of ``t`` (or ``(connect, read)``) bounds the
call at connect + read, each attempt's timeouts are cut to what remains, and no retry
starts past it. Without it a server that stalls every attempt held a GET for
``attempts x read timeout`` plus the waits (5 x 0.3 s for ``timeout=0.3``), far past
what the caller asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from loopback_http import STALL, Backend
from requests_helpers import quick_policy

from outlast import CircuitBreaker, Policy, Resolver, Retry
from outlast.requests import Session, classify_error, classify_result
from outlast.testing import DNSServer


@pytest.mark.parametrize("timeout", [0.3, (0.3, 0.3)])
def test_a_stalling_server_fails_within_the_callers_timeout(
    fault_dns: DNSServer,
    unique_name: Callable[[str], str],
    resolver_for: Callable[..., Resolver],
    timeout: float | tuple[float, float],
) -> None:
    name = unique_name("stall")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    with Backend() as server, Session(resolver=resolver_for(), policy=quick_policy(5)) as s:
        server.status = STALL  # type: ignore[assignment]
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            s.get(f"http://{name}:{server.port}/", timeout=timeout)
        elapsed = time.monotonic() - started
        assert server.hits >= 2  # it was retried, within the deadline
    # connect + read = 0.6 s; five whole attempts would take at least 1.5 s.
    assert elapsed < 1.3


def test_a_retry_whose_deadline_passed_in_the_backoff_is_not_sent(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    """The backoff overran the call's deadline (a busy thread: here a sleep that takes
    0.6 s when asked for 0.01 s, against a 0.4 s deadline). The retry is cut before it
    leaves (``requests.Timeout``, neutral), not sent with a token 1 ms timeout to be
    counted against the backend: the one 503 is the call's only failure (before: a
    second hit, a second failure, and a ``failures=2`` breaker open after one call)."""
    name = unique_name("overrun")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    policy = Policy(
        retry=Retry(attempts=3, base=0.01, cap=0.01),
        budget=None,
        breaker=CircuitBreaker(failures=2, reset=30, min_reset=30, max_wait=0),
        classify_error=classify_error,
        classify_result=classify_result,
        sleep=lambda seconds: time.sleep(0.6),
    )
    with Backend() as server, Session(resolver=resolver_for(), policy=policy) as s:
        server.status = 503
        with pytest.raises(requests.exceptions.Timeout, match="deadline"):
            s.get(f"http://{name}:{server.port}/", timeout=0.2)
        assert server.hits == 1  # the retry never left
        (state,) = [k for k in policy.snapshot().keys if k.key.endswith(f":{server.port}")]
    assert state.failures == 1  # the 503 alone


def test_a_retry_cut_at_the_deadline_is_neutral_under_the_users_own_classifier(
    fault_dns: DNSServer, unique_name: Callable[[str], str], resolver_for: Callable[..., Resolver]
) -> None:
    """docs/requests.md: a retry cut because its backoff overran the deadline "counts
    neither for nor against the origin". With a classifier of the user's own (here one
    that retries every error, as ``retry_all`` does) the cut ``requests.Timeout`` was
    counted unwell: a dropped connection and a busy thread opened a ``failures=2``
    breaker in one call. The adapter's rules on top hold it neutral, as a proxy's
    refusal."""
    from loopback_http import DROP

    from outlast.policy import Outcome, retry_all

    def mine(outcome: Outcome, /) -> Any:
        return retry_all(outcome)

    name = unique_name("overrun-own")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    policy = Policy(
        retry=Retry(attempts=3, base=0.01, cap=0.01),
        budget=None,
        breaker=CircuitBreaker(failures=2, reset=30, min_reset=30, max_wait=0),
        classify_error=mine,
        sleep=lambda seconds: time.sleep(0.6),
    )
    with Backend() as server, Session(resolver=resolver_for(), policy=policy) as s:
        server.status = DROP  # read the GET, close without answering: retried
        with pytest.raises(requests.exceptions.Timeout, match="deadline"):
            s.get(f"http://{name}:{server.port}/", timeout=0.2)
        assert server.hits == 1  # the retry never left
        (state,) = [k for k in policy.snapshot().keys if k.key.endswith(f":{server.port}")]
    assert state.failures == 1, policy.snapshot()  # the dropped connection alone
    assert state.state == "closed"
