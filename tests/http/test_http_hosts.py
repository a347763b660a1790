"""Host forms in URLs, through an outlast transport, as plain httpx takes them.

Cells: a name with a trailing dot, an upper-case name, and the numeric IPv4 forms
``getaddrinfo`` (and so plain httpx and requests) accepts (``127.1``, ``2130706433``,
``0x7f000001``). (IPv6 literals were checked by hand against a ``::1`` server; the
scripted ``Backend`` listens on IPv4 only.)
Invariant: an address in the URL is dialled as that address, never asked of a DNS
provider; a name is resolved by outlast. The numeric forms are a known gap: outlast's
``ip_literal`` (``outlast._names``) takes only the dotted-quad form, so they go to the
providers as names, and fail unless the ``system`` provider is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from loopback_http import Backend

from outlast import Resolver
from outlast.http import Transport
from outlast.testing import DNSServer


@pytest.fixture
def client(resolver_for: Callable[..., Resolver]) -> Iterator[httpx.Client]:
    with httpx.Client(transport=Transport(resolver=resolver_for())) as made:
        yield made


@pytest.mark.parametrize("form", ["{name}.", "{upper}"])
def test_name_forms_resolve_through_outlast(
    fault_dns: DNSServer, unique_name: Callable[[str], str], client: httpx.Client, form: str
) -> None:
    name = unique_name("forms")
    fault_dns.set(name, ["127.0.0.1"], ttl=30)
    with Backend() as server:
        host = form.format(name=name, upper=name.upper())
        response = client.get(f"http://{host}:{server.port}/")
        assert response.status_code == 200


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001"])
def test_numeric_ipv4_forms_are_dialled_not_resolved(client: httpx.Client, host: str) -> None:
    with Backend() as server:
        assert client.get(f"http://{host}:{server.port}/").status_code == 200
