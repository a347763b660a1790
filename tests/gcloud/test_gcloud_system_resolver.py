"""google-cloud-storage on the system resolver against the same library after ``mount``.

The empty-record replay runs in a network namespace whose ``/etc/resolv.conf`` names a
DNS server on loopback (tests/netns.py): the plain client resolves through glibc's
``getaddrinfo`` as in production. Both download an object
from gcp-storage-emulator in the namespace with ``retry=None``; the outlast side's
session went through ``outlast.requests.mount(client._http)``.
tests/system_replay.py has both sides and what every replay is held to.
"""

from __future__ import annotations

import pytest

import netns
from system_replay import check_replay

pytestmark = pytest.mark.skipif(
    netns.unavailable() is not None, reason=f"needs a network namespace: {netns.unavailable()}"
)


def test_plain_gcs_fails_while_the_record_is_empty_outlast_does_not() -> None:
    # Record TTL 1 s: good 1 s, empty 2 s, good 1 s; a call every 100 ms on a new connection.
    result = netns.run(
        "system_replay:replay",
        timeout=90,
        client="google",
        ttl=1,
        good=1.0,
        empty=2.0,
        after=1.0,
    )
    check_replay(result, "requests.exceptions.ConnectionError")
