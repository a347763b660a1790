"""BindServer runs a real BIND 9 whose records change under nsupdate while clients ask."""

from __future__ import annotations

import base64
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx
import pytest

from servers import bind as bind_module
from servers.bind import BindNotInstalled, BindServer

pytestmark = pytest.mark.bind

NameFactory = Callable[[str], str]


def addresses(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


def test_starts_quickly_and_serves_the_zone(bind: BindServer) -> None:
    assert bind.running
    assert bind.startup_seconds < 2.0
    assert bind.provider == f"udp://127.0.0.1:{bind.port}"
    assert bind.tcp_provider == f"tcp://127.0.0.1:{bind.port}"
    reply = bind.query("outlast.test.", "SOA")
    assert reply.flags & dns.flags.AA
    assert reply.answer[0][0].minimum == 2


def test_set_is_visible_over_udp_and_tcp(bind: BindServer, unique_name: NameFactory) -> None:
    name = unique_name("api")
    bind.set(name, ["192.0.2.1", "2001:db8::1"], ttl=5)
    for tcp in (False, True):
        a = bind.query(name, "A", tcp=tcp)
        assert addresses(a) == {"192.0.2.1"}
        assert a.answer[0].ttl == 5
        assert addresses(bind.query(name, "AAAA", tcp=tcp)) == {"2001:db8::1"}
    bind.set(name, ["192.0.2.9"])  # replaces, both families
    assert addresses(bind.query(name, "A")) == {"192.0.2.9"}
    assert addresses(bind.query(name, "AAAA")) == set()


def test_relative_names_land_in_the_zone(bind: BindServer) -> None:
    bind.set("rel", ["192.0.2.3"])
    assert bind.fqdn("rel") == "rel.outlast.test."
    assert addresses(bind.query("rel.outlast.test")) == {"192.0.2.3"}


def test_empty_then_delete_then_restore(bind: BindServer, unique_name: NameFactory) -> None:
    name = unique_name("db")
    bind.set(name, ["192.0.2.1"])

    bind.empty(name)
    nodata = bind.query(name)
    assert nodata.rcode() == dns.rcode.NOERROR
    assert not nodata.answer
    (soa,) = nodata.authority
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.ttl == 2  # the negative TTL

    bind.delete(name)
    nx = bind.query(name)
    assert nx.rcode() == dns.rcode.NXDOMAIN
    assert nx.authority[0].ttl == 2

    bind.set(name, ["192.0.2.2"])
    assert addresses(bind.query(name)) == {"192.0.2.2"}


def test_changes_reach_a_client_asking_all_along(
    bind: BindServer, unique_name: NameFactory
) -> None:
    name = unique_name("live")
    bind.set(name, ["192.0.2.1"], ttl=1)
    seen: list[tuple[str, frozenset[str]]] = []
    stop = threading.Event()

    def client() -> None:
        q = dns.message.make_query(name, "A")
        while not stop.is_set():
            reply = dns.query.udp(q, "127.0.0.1", port=bind.port, timeout=1)
            state = (dns.rcode.to_text(reply.rcode()), frozenset(addresses(reply)))
            if not seen or seen[-1] != state:
                seen.append(state)
            time.sleep(0.005)

    asker = threading.Thread(target=client)
    asker.start()
    try:
        changes: list[Callable[[], None]] = [
            lambda: bind.empty(name),
            lambda: bind.delete(name),
            lambda: bind.set(name, ["192.0.2.2"], ttl=1),
        ]
        for change in changes:
            time.sleep(0.05)
            change()
        time.sleep(0.05)
    finally:
        stop.set()
        asker.join()
    assert seen == [
        ("NOERROR", frozenset({"192.0.2.1"})),
        ("NOERROR", frozenset()),
        ("NXDOMAIN", frozenset()),
        ("NOERROR", frozenset({"192.0.2.2"})),
    ]


def test_dns_over_tls(bind: BindServer, unique_name: NameFactory) -> None:
    name = unique_name("dot")
    bind.set(name, ["192.0.2.4"])
    assert bind.tls_provider == f"tls://127.0.0.1:{bind.tls_port}"
    q = dns.message.make_query(name, "A")
    for hostname in ("127.0.0.1", "dns.outlast.test"):
        reply = dns.query.tls(
            q,
            "127.0.0.1",
            port=bind.tls_port,
            ssl_context=bind.ssl_context(),
            server_hostname=hostname,
            timeout=2,
        )
        assert addresses(reply) == {"192.0.2.4"}


def test_dns_over_tls_refuses_an_untrusted_client(bind: BindServer) -> None:
    q = dns.message.make_query("outlast.test.", "SOA")
    with pytest.raises(ssl.SSLError):
        dns.query.tls(q, "127.0.0.1", port=bind.tls_port, server_hostname="127.0.0.1", timeout=2)


def test_dns_over_https_http2(bind: BindServer, unique_name: NameFactory) -> None:
    # dnspython 2.9's dns.query.https needs the httpx2 package, so speak RFC 8484
    # with httpx (BIND 9.18 serves DoH over HTTP/2 only).
    name = unique_name("doh")
    bind.set(name, ["192.0.2.5", "2001:db8::5"])
    assert bind.doh_provider == f"https://127.0.0.1:{bind.doh_port}/dns-query"
    wire = dns.message.make_query(name, "A").to_wire()
    with httpx.Client(verify=bind.ssl_context(), http2=True, timeout=2) as client:
        posted = client.post(
            bind.doh_provider,
            content=wire,
            headers={
                "content-type": "application/dns-message",
                "accept": "application/dns-message",
            },
        )
        got = client.get(
            bind.doh_provider,
            params={"dns": base64.urlsafe_b64encode(wire).rstrip(b"=").decode()},
            headers={"accept": "application/dns-message"},
        )
    for response in (posted, got):
        assert response.http_version == "HTTP/2"
        assert response.status_code == 200
        assert addresses(dns.message.from_wire(response.content)) == {"192.0.2.5"}


def test_missing_named_fails_with_an_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(bind_module, "_SBIN", str(tmp_path))
    with pytest.raises(BindNotInstalled, match="apt-get install -y bind9"):
        BindServer().start()


def test_close_stops_named() -> None:
    server = BindServer(tls=False).start()
    port = server.port
    server.close()
    assert not server.running
    q = dns.message.make_query("outlast.test.", "SOA")
    with pytest.raises((dns.exception.Timeout, ConnectionRefusedError)):
        dns.query.udp(q, "127.0.0.1", port=port, timeout=0.2)
    server.close()  # idempotent
