"""Each plain client on the system resolver against its outlast form, through one outage.

The empty-record replay runs in a network namespace whose ``/etc/resolv.conf`` names a
DNS server on loopback (tests/netns.py): the plain client resolves through glibc's
``getaddrinfo`` as in production; tests/system_replay.py has both sides of each client
and what every replay is held to (``check_replay``). Record TTL 1 s: good 1 s, empty
2 s, good 1 s; a call every 100 ms on a new connection.

- requests: ``requests.get`` against ``outlast.requests.Session()``, a small HTTP
  server in the namespace;
- aiohttp: a new ``aiohttp.ClientSession`` per call (so aiohttp's own 10 s DNS cache
  does not hide a 2 s outage) against one ``outlast.aiohttp.ClientSession()``;
- azure: azure-storage-blob downloads from Azurite with ``retry_total=0``, the outlast
  side's transport ``RequestsTransport(session=outlast.requests.Session())``;
- google: google-cloud-storage downloads from gcp-storage-emulator with ``retry=None``,
  the outlast side's session through ``outlast.requests.mount(client._http)``.
"""

from __future__ import annotations

from typing import Any

import pytest

import netns
from system_replay import check_replay

pytestmark = pytest.mark.skipif(
    netns.forbidden() is not None, reason=f"needs a network namespace: {netns.forbidden()}"
)


@pytest.mark.parametrize(
    ("client", "plain_error", "options"),
    [
        ("requests", "NameResolutionError", {}),
        ("aiohttp", "ClientConnectorDNSError", {"session_per_call": True}),
        ("azure", "ServiceRequestError", {}),
        ("google", "requests.exceptions.ConnectionError", {}),
    ],
)
def test_the_plain_client_fails_while_the_record_is_empty_outlast_does_not(
    client: str, plain_error: str, options: dict[str, Any]
) -> None:
    result = netns.run(
        "system_replay:replay",
        timeout=90,
        client=client,
        ttl=1,
        good=1.0,
        empty=2.0,
        after=1.0,
        **options,
    )
    check_replay(result, plain_error)


def test_an_aiohttp_call_once_the_record_has_been_empty_11_s() -> None:
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
