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

import pytest
import requests
from loopback_http import STALL, Backend
from requests_helpers import quick_policy

from outlast import Resolver
from outlast.requests import Session
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
