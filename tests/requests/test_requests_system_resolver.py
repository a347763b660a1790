"""``requests.get`` on the system resolver against ``outlast.requests.Session``.

The empty-record replay runs in a network namespace whose ``/etc/resolv.conf`` names a
DNS server on loopback (tests/netns.py): the plain client resolves through glibc's
``getaddrinfo`` as in production. The outlast side is
``outlast.requests.Session()``; both call a small HTTP server in the namespace.
tests/system_replay.py has both sides and what every replay is held to.
"""

from __future__ import annotations

import pytest

import netns
from system_replay import check_replay

pytestmark = pytest.mark.skipif(
    netns.unavailable() is not None, reason=f"needs a network namespace: {netns.unavailable()}"
)


def test_plain_requests_fails_while_the_record_is_empty_outlast_does_not() -> None:
    # Record TTL 1 s: good 1 s, empty 2 s, good 1 s; a call every 100 ms on a new connection.
    result = netns.run(
        "system_replay:replay",
        timeout=90,
        client="requests",
        ttl=1,
        good=1.0,
        empty=2.0,
        after=1.0,
    )
    check_replay(result, "NameResolutionError")
