"""DNSServer, the dnspython fault server, does what each of its modes promises."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import pytest

from outlast.testing import DNSServer

NameFactory = Callable[[str], str]


def udp(
    server: DNSServer, name: str, rdtype: str = "A", timeout: float = 1.0
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    return dns.query.udp(q, server.address, port=server.port, timeout=timeout)


def tcp(
    server: DNSServer, name: str, rdtype: str = "A", timeout: float = 1.0
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype)
    return dns.query.tcp(q, server.address, port=server.port, timeout=timeout)


def addresses(reply: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in reply.answer for rd in rrset}


def soa_minimum(reply: dns.message.Message) -> int:
    (soa,) = reply.authority
    assert soa.rdtype == dns.rdatatype.SOA
    return int(soa[0].minimum)


def test_set_answers_a_and_aaaa_over_udp_and_tcp(
    fault_dns: DNSServer, unique_name: NameFactory
) -> None:
    name = unique_name("api")
    fault_dns.set(name, ["192.0.2.1", "192.0.2.2", "2001:db8::1"], ttl=30)
    for ask in (udp, tcp):
        a = ask(fault_dns, name, "A")
        assert a.rcode() == dns.rcode.NOERROR
        assert a.flags & dns.flags.AA
        assert addresses(a) == {"192.0.2.1", "192.0.2.2"}
        assert a.answer[0].ttl == 30
        assert addresses(ask(fault_dns, name, "AAAA")) == {"2001:db8::1"}


def test_names_are_case_insensitive_with_or_without_trailing_dot(fault_dns: DNSServer) -> None:
    fault_dns.set("Api.Example.COM", ["192.0.2.7"])
    assert addresses(udp(fault_dns, "api.example.com.")) == {"192.0.2.7"}
    assert addresses(udp(fault_dns, "API.EXAMPLE.com")) == {"192.0.2.7"}
    assert fault_dns.queries_for("api.example.com.") == 2


def test_set_replaces_and_other_types_get_nodata(fault_dns: DNSServer) -> None:
    fault_dns.set("svc.test", ["192.0.2.1"])
    fault_dns.set("svc.test", ["2001:db8::2"])
    assert addresses(udp(fault_dns, "svc.test", "A")) == set()
    assert addresses(udp(fault_dns, "svc.test", "AAAA")) == {"2001:db8::2"}
    mx = udp(fault_dns, "svc.test", "MX")
    assert mx.rcode() == dns.rcode.NOERROR
    assert not mx.answer
    assert mx.authority


def test_empty_is_nodata_with_soa_carrying_the_negative_ttl() -> None:
    with DNSServer(negative_ttl=7) as server:
        server.set("db.test", ["192.0.2.1"])
        server.empty("db.test")
        reply = udp(server, "db.test")
        assert reply.rcode() == dns.rcode.NOERROR
        assert not reply.answer
        assert soa_minimum(reply) == 7
        assert reply.authority[0].ttl == 7


def test_nxdomain_and_unknown_names(fault_dns: DNSServer) -> None:
    fault_dns.set("gone.test", ["192.0.2.1"])
    fault_dns.nxdomain("gone.test")
    for name in ("gone.test", "never-configured.test"):
        reply = udp(fault_dns, name)
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert soa_minimum(reply) == 5  # the default negative TTL


@pytest.mark.parametrize(
    ("mode", "rcode"), [("servfail", dns.rcode.SERVFAIL), ("refused", dns.rcode.REFUSED)]
)
def test_fail_answers_with_the_error_then_heals(
    fault_dns: DNSServer, mode: str, rcode: dns.rcode.Rcode
) -> None:
    fault_dns.set("x.test", ["192.0.2.1"])
    fault_dns.fail(mode)  # type: ignore[arg-type]
    assert udp(fault_dns, "x.test").rcode() == rcode
    assert tcp(fault_dns, "x.test").rcode() == rcode
    fault_dns.fail(None)
    assert addresses(udp(fault_dns, "x.test")) == {"192.0.2.1"}


def test_fail_for_one_name_leaves_the_others(fault_dns: DNSServer) -> None:
    fault_dns.set("bad.test", ["192.0.2.1"])
    fault_dns.set("good.test", ["192.0.2.2"])
    fault_dns.fail("servfail", name="BAD.test.")
    assert udp(fault_dns, "bad.test").rcode() == dns.rcode.SERVFAIL
    assert addresses(udp(fault_dns, "good.test")) == {"192.0.2.2"}
    fault_dns.fail(None, name="bad.test")
    assert addresses(udp(fault_dns, "bad.test")) == {"192.0.2.1"}


def test_drop_never_answers_but_counts(fault_dns: DNSServer) -> None:
    fault_dns.set("hole.test", ["192.0.2.1"])
    fault_dns.fail("drop")
    with pytest.raises(dns.exception.Timeout):
        udp(fault_dns, "hole.test", timeout=0.2)
    with pytest.raises(dns.exception.Timeout):
        tcp(fault_dns, "hole.test", timeout=0.2)
    assert fault_dns.queries == 2
    fault_dns.fail(None)
    assert addresses(udp(fault_dns, "hole.test")) == {"192.0.2.1"}


def test_drop_one_name(fault_dns: DNSServer) -> None:
    fault_dns.set("a.test", ["192.0.2.1"])
    fault_dns.fail("drop", name="b.test")
    with pytest.raises(dns.exception.Timeout):
        udp(fault_dns, "b.test", timeout=0.2)
    assert addresses(udp(fault_dns, "a.test")) == {"192.0.2.1"}


def test_fail_rejects_unknown_modes(fault_dns: DNSServer) -> None:
    with pytest.raises(ValueError, match="mode"):
        fault_dns.fail("timeout")  # type: ignore[arg-type]


def test_delay_holds_an_answer_without_blocking_others(fault_dns: DNSServer) -> None:
    fault_dns.set("slow.test", ["192.0.2.1"])
    fault_dns.set("fast.test", ["192.0.2.2"])
    fault_dns.delay(0.5, name="slow.test")
    with ThreadPoolExecutor(2) as pool:
        began = time.monotonic()
        slow = pool.submit(udp, fault_dns, "slow.test")
        time.sleep(0.05)  # the slow query is in flight
        assert addresses(udp(fault_dns, "fast.test")) == {"192.0.2.2"}
        assert time.monotonic() - began < 0.4
        assert addresses(slow.result()) == {"192.0.2.1"}
        assert time.monotonic() - began >= 0.5
    fault_dns.delay(0)
    began = time.monotonic()
    udp(fault_dns, "slow.test")
    assert time.monotonic() - began < 0.3


def test_delay_everything_and_over_tcp(fault_dns: DNSServer) -> None:
    fault_dns.set("t.test", ["192.0.2.1"])
    fault_dns.delay(0.2)
    began = time.monotonic()
    assert addresses(tcp(fault_dns, "t.test")) == {"192.0.2.1"}
    assert time.monotonic() - began >= 0.2


def test_truncate_forces_tcp(fault_dns: DNSServer) -> None:
    fault_dns.set("big.test", ["192.0.2.1"])
    fault_dns.truncate(True)
    reply = udp(fault_dns, "big.test")
    assert reply.flags & dns.flags.TC
    assert not reply.answer
    q = dns.message.make_query("big.test", "A")
    full, used_tcp = dns.query.udp_with_fallback(
        q, fault_dns.address, port=fault_dns.port, timeout=1
    )
    assert used_tcp
    assert addresses(full) == {"192.0.2.1"}
    assert fault_dns.tcp_queries == 1
    assert fault_dns.queries == 3
    fault_dns.truncate(False)
    assert not udp(fault_dns, "big.test").flags & dns.flags.TC


def test_an_answer_too_big_for_udp_is_truncated(fault_dns: DNSServer) -> None:
    many = [f"10.0.{i // 256}.{i % 256}" for i in range(100)]
    fault_dns.set("many.test", many)
    reply = udp(fault_dns, "many.test")  # no EDNS: 512 bytes at most
    assert reply.flags & dns.flags.TC
    assert addresses(tcp(fault_dns, "many.test")) == set(many)


def test_counts(fault_dns: DNSServer) -> None:
    fault_dns.set("c.test", ["192.0.2.1", "2001:db8::1"])
    udp(fault_dns, "c.test", "A")
    udp(fault_dns, "c.test", "AAAA")
    tcp(fault_dns, "c.test", "A")
    udp(fault_dns, "other.test", "A")
    assert fault_dns.queries == 4
    assert fault_dns.tcp_queries == 1
    assert fault_dns.queries_for("c.test") == 3
    assert fault_dns.queries_for("c.test", "A") == 2
    assert fault_dns.queries_for("c.test", dns.rdatatype.AAAA) == 1
    fault_dns.reset_counts()
    assert fault_dns.queries == 0
    assert fault_dns.queries_for("c.test") == 0


def test_malformed_packets_are_ignored(fault_dns: DNSServer) -> None:
    fault_dns.set("ok.test", ["192.0.2.1"])
    response = dns.message.make_response(dns.message.make_query("ok.test", "A")).to_wire()
    junk = [b"", b"\x00", b"\xff" * 11, b"\x12\x34" + b"\x01" * 40, response]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in junk:
            sock.sendto(packet, (fault_dns.address, fault_dns.port))
    with socket.create_connection((fault_dns.address, fault_dns.port), timeout=1) as conn:
        for packet in junk:
            conn.sendall(struct.pack("!H", len(packet)) + packet)
        conn.sendall(b"\x00\x20half a message")  # then hang up mid-message
    assert addresses(udp(fault_dns, "ok.test")) == {"192.0.2.1"}
    assert addresses(tcp(fault_dns, "ok.test")) == {"192.0.2.1"}
    assert fault_dns.queries == 2


def test_several_queries_on_one_tcp_connection(fault_dns: DNSServer) -> None:
    fault_dns.set("p.test", ["192.0.2.1"])
    with socket.create_connection((fault_dns.address, fault_dns.port), timeout=1) as conn:
        for _ in range(3):
            dns.query.send_tcp(conn, dns.message.make_query("p.test", "A"))
            reply, _ = dns.query.receive_tcp(conn, expiration=time.time() + 1)
            assert addresses(reply) == {"192.0.2.1"}


def test_mutation_while_serving_is_safe(fault_dns: DNSServer) -> None:
    fault_dns.set("flip.test", ["192.0.2.1"])
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            fault_dns.empty("flip.test")
            fault_dns.set("flip.test", ["192.0.2.1"])
            time.sleep(0.0005)  # let queries in between flips

    flipper = threading.Thread(target=flip)
    flipper.start()
    try:
        seen = {frozenset(addresses(udp(fault_dns, "flip.test"))) for _ in range(200)}
    finally:
        stop.set()
        flipper.join()
    assert seen <= {frozenset(), frozenset({"192.0.2.1"})}


def test_thousands_of_queries_per_second(fault_dns: DNSServer) -> None:
    fault_dns.set("hot.test", ["192.0.2.1"])
    q = dns.message.make_query("hot.test", "A").to_wire()
    per_client, clients = 1000, 4

    def hammer() -> int:
        answered = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1)
            sock.connect((fault_dns.address, fault_dns.port))
            for _ in range(per_client):
                sock.send(q)
                answered += bool(sock.recv(512))
        return answered

    began = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        answered = sum(pool.map(lambda _: hammer(), range(clients)))
    rate = answered / (time.monotonic() - began)
    assert answered == per_client * clients
    assert fault_dns.queries == per_client * clients
    assert rate > 1000, f"{rate:.0f} queries/s"


def test_ipv6_loopback() -> None:
    with DNSServer(address="::1") as server:
        server.set("v6.test", ["2001:db8::6"])
        assert server.provider == f"udp://[::1]:{server.port}"
        assert addresses(udp(server, "v6.test", "AAAA")) == {"2001:db8::6"}


def test_providers_and_lifecycle() -> None:
    server = DNSServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.provider
    with server:
        assert server.address == "127.0.0.1"
        assert server.provider == f"udp://127.0.0.1:{server.port}"
        assert server.tcp_provider == f"tcp://127.0.0.1:{server.port}"
        with pytest.raises(RuntimeError, match="once"):
            server.start()
    server.close()  # idempotent
    with pytest.raises(RuntimeError, match="once"):
        server.start()


def test_close_is_prompt_with_busy_clients() -> None:
    before = threading.active_count()
    server = DNSServer().start()
    server.set("z.test", ["192.0.2.1"])
    server.delay(5)
    idle = socket.create_connection((server.address, server.port), timeout=1)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(
                dns.message.make_query("z.test", "A").to_wire(), (server.address, server.port)
            )
            time.sleep(0.05)  # a delayed answer is pending, a TCP connection is open
            began = time.monotonic()
            server.close()
            assert time.monotonic() - began < 1.0
    finally:
        idle.close()
    assert threading.active_count() == before


def test_a_stub_resolver_caches_negatives_for_the_negative_ttl() -> None:
    with DNSServer(negative_ttl=3) as server:
        server.empty("e.test")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(server.address, server.port)]
        resolver.cache = dns.resolver.Cache()
        for _ in range(2):
            with pytest.raises(dns.resolver.NoAnswer):
                resolver.resolve("e.test", "A")
            with pytest.raises(dns.resolver.NXDOMAIN):
                resolver.resolve("x.test", "A")
        assert server.queries == 2  # the second round came from the cache
        cached = resolver.cache.get((dns.name.from_text("e.test"), dns.rdatatype.A, 1))
        assert cached is not None
        assert 2 < cached.expiration - time.time() <= 3
