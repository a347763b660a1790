"""``aiohttp.ClientSession`` on the system resolver against ``outlast.aiohttp.ClientSession``.

The empty-record replay runs in a network namespace whose ``/etc/resolv.conf`` names a
DNS server on loopback (tests/netns.py): the plain client resolves through glibc's
``getaddrinfo`` as in production. The plain side opens a
new session per call, so aiohttp's own 10 s DNS cache does not hide a 2 s outage;
the outlast side is one ``outlast.aiohttp.ClientSession()``.
tests/system_replay.py has both sides and what every replay is held to.
"""

from __future__ import annotations

import pytest

import netns
from system_replay import check_replay

pytestmark = pytest.mark.skipif(
    netns.unavailable() is not None, reason=f"needs a network namespace: {netns.unavailable()}"
)


def test_plain_aiohttp_fails_while_the_record_is_empty_outlast_does_not() -> None:
    # Record TTL 1 s: good 1 s, empty 2 s, good 1 s; a call every 100 ms on a new connection.
    result = netns.run(
        "system_replay:replay",
        timeout=90,
        client="aiohttp",
        session_per_call=True,
        ttl=1,
        good=1.0,
        empty=2.0,
        after=1.0,
    )
    check_replay(result, "ClientConnectorDNSError")


def test_a_call_once_the_record_has_been_empty_11_s() -> None:
    # One session each, used while the record was good; 11 s later aiohttp's own 10 s DNS
    # cache has expired: the plain session asks the system resolver and fails at once,
    # outlast's serves the last-known-good address.
    late = netns.run(
        "system_replay:after_empty", timeout=90, clients=["aiohttp"], empty_for=11.0, limit=30
    )["aiohttp"]
    took, error = late["plain"]
    assert error is not None
    assert "ClientConnectorDNSError" in error
    assert took < 1.0
    took, error = late["outlast"]
    assert error is None
    assert took < 2.0
