"""Partial answers: a fault on one record type never removes the other family's addresses.

The matrix: provider kind (udp, tcp, tls, https over the fault server; system over a
scripted getaddrinfo) x fault (drop, delay past the timeout, SERVFAIL, REFUSED,
truncation, malformed reply) x record type (A, AAAA). In every cell:

- a cold name gets the family that answered, with no error (what arrived is combined
  at the deadline);
- a held dual-stack name keeps both families through the refresh (a failure never
  removes addresses), and the failed family is re-asked soon.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outlast import Resolver
from outlast.testing import DNSServer

from .fronts import Front

TIMEOUT = 0.3
# A cold lookup over tls:// or https:// opens a new TLS connection through the test's
# front: on a loaded 2-core machine that alone has taken more than 0.3 s.
TLS_TIMEOUT = 1.0
FAULTS = ["drop", "delay", "servfail", "refused", "malformed", "truncate"]
V4, V6 = "127.0.0.10", "2001:db8::10"


@pytest.fixture
def front(fault_dns: DNSServer, tmp_path: Path) -> Iterator[Front]:
    with Front(fault_dns, tmp_path) as running:
        yield running


def _provider(kind: str, fault_dns: DNSServer, front: Front) -> tuple[str, str | bool]:
    if kind == "udp":
        return fault_dns.provider, True
    if kind == "tcp":
        return fault_dns.tcp_provider, True
    if kind == "tls":
        return front.tls_provider, front.ca_file
    return front.doh_provider, front.ca_file


def _inject(server: DNSServer, fault: str, rdtype: str, timeout: float) -> None:
    if fault == "delay":
        server.delay(timeout * 4, rdtype=rdtype)
    else:
        server.fail(fault, rdtype=rdtype)  # type: ignore[arg-type]


def _settle(resolver: Resolver) -> None:
    deadline = time.monotonic() + 10
    while any(not f.done() for f in list(resolver._inflight.values())):
        assert time.monotonic() < deadline, "the lookup never finished"
        time.sleep(0.01)


def _family(rdtype: str) -> str:
    return V4 if rdtype == "A" else V6


def _other(rdtype: str) -> str:
    return V6 if rdtype == "A" else V4


@pytest.mark.parametrize("rdtype", ["A", "AAAA"])
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", ["udp", "tcp", "tls", "https"])
def test_a_fault_on_one_record_type_never_removes_addresses(
    fault_dns: DNSServer,
    front: Front,
    unique_name: Callable[[str], str],
    kind: str,
    fault: str,
    rdtype: str,
) -> None:
    held, cold = unique_name("held"), unique_name("cold")
    fault_dns.set(held, [V4, V6], ttl=1)
    fault_dns.set(cold, [V4, V6], ttl=1)
    provider, verify = _provider(kind, fault_dns, front)
    timeout = TIMEOUT if kind in ("udp", "tcp") else TLS_TIMEOUT
    with Resolver(
        providers=[provider], verify=verify, timeout=timeout, min_ttl=0.2, max_ttl=0.2
    ) as resolver:
        assert set(resolver.resolve(held).addresses) == {V4, V6}
        _inject(fault_dns, fault, rdtype, timeout)
        time.sleep(0.25)  # expired: the next resolve refreshes under the fault
        assert set(resolver.resolve(held).addresses) == {V4, V6}
        _settle(resolver)
        after = resolver.resolve(held)
        assert set(after.addresses) == {V4, V6}, after  # the failed family was kept
        truncation_healed = fault == "truncate" and kind == "udp"  # TCP fallback
        if not truncation_healed and fault != "truncate":
            assert after.stale, after
            assert rdtype in after.source, after
        cold_answer = resolver.resolve(cold)  # a cold name: the family that answered
        assert _other(rdtype) in cold_answer.addresses, cold_answer
        if fault != "truncate":
            assert _family(rdtype) not in cold_answer.addresses
        entry = resolver._table.get(cold)
        assert entry is not None
        if fault != "truncate":
            assert entry.next_refresh_at - entry.learned_at <= 1.0  # re-asked soon
        fault_dns.fail(None)
        fault_dns.delay(0)
        time.sleep(0.45)  # the re-ask runs and the record heals
        resolver.resolve(cold)
        _settle(resolver)
        assert set(resolver.resolve(cold).addresses) == {V4, V6}


@pytest.mark.parametrize("rdtype", ["A", "AAAA"])
@pytest.mark.parametrize("fault", ["drop", "servfail", "nodata-ish"])
def test_the_system_provider_asks_each_family_apart(
    monkeypatch: pytest.MonkeyPatch, unique_name: Callable[[str], str], fault: str, rdtype: str
) -> None:
    real = socket.getaddrinfo
    broken = socket.AF_INET if rdtype == "A" else socket.AF_INET6
    state = {"faulty": False}

    def fake(host: str, port: Any, family: int = 0, type: int = 0, *rest: Any) -> Any:
        if host.endswith(".outlast.test"):
            if state["faulty"] and family == broken:
                if fault == "drop":
                    time.sleep(TIMEOUT * 3)
                    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure")
                if fault == "servfail":
                    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure")
                raise socket.gaierror(socket.EAI_FAIL, "Non-recoverable failure")
            address = V4 if family == socket.AF_INET else V6
            sockaddr = (address, 0) if family == socket.AF_INET else (address, 0, 0, 0)
            return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]
        return real(host, port, family, type, *rest)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    name = unique_name("sys")
    with Resolver(providers=["system"], timeout=TIMEOUT) as resolver:
        assert set(resolver.resolve(name).addresses) == {V4, V6}
        state["faulty"] = True
        cold = resolver.resolve(unique_name("cold"))
        assert cold.addresses == (_other(rdtype),)  # the family that answered
        entry = resolver._table.get(name)
        assert entry is not None
        entry.next_refresh_at = entry.fresh_until = -1.0  # refresh now
        resolver.resolve(name)
        _settle(resolver)
        answer = resolver.resolve(name)
        assert set(answer.addresses) == {V4, V6}  # the failed family kept
        assert answer.stale
