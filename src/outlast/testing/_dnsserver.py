"""A small authoritative DNS server on loopback, for rehearsing DNS failures in tests.

`DNSServer` answers A and AAAA queries from a table the test changes while clients
run, and misbehaves on demand the ways real DNS does: empty answers (NODATA),
NXDOMAIN, SERVFAIL, REFUSED, silence (a blackhole), slow answers and truncated UDP
answers that force a retry over TCP. It speaks UDP and TCP on one port of 127.0.0.1
(or ``::1``) and serves from background threads, so synchronous and asyncio tests can
both use it.

Threads: one serving thread multiplexes the UDP socket and the TCP listener; each TCP
connection gets a short-lived thread; one scheduler thread sends delayed answers, so
a delay never holds up other queries. Every loop wakes at least every
`_POLL_INTERVAL` seconds, so `close()` returns promptly.

This module imports nothing from the rest of outlast.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import ipaddress
import itertools
import logging
import selectors
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TypeAlias

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["DNSServer", "FailMode"]

logger = logging.getLogger("outlast.testing")

FailMode: TypeAlias = Literal["servfail", "drop", "refused", "malformed", "truncate"]
"""How `DNSServer.fail` makes the server misbehave.

``"malformed"`` answers with bytes that are not a DNS message (the query's id, then
junk); ``"truncate"`` answers UDP with the TC bit and no records (TCP stays complete).
"""

DEFAULT_TTL = 60
DEFAULT_NEGATIVE_TTL = 5

_FAIL_MODES: frozenset[str] = frozenset({"servfail", "drop", "refused", "malformed", "truncate"})
_POLL_INTERVAL = 0.1  # the longest any serving loop sleeps before checking for close
_TCP_IDLE_TIMEOUT = 10.0  # a TCP connection with no query for this long is closed
_UDP_BURST = 64  # datagrams read per wakeup before looking at the TCP listener again
_MAX_TCP_CONNECTIONS = 256
_SOA_OWNER = dns.name.root
_SOA_MNAME = "ns.outlast.test."
_SOA_RNAME = "hostmaster.outlast.test."


@dataclass(frozen=True, slots=True)
class _Records:
    """What the server holds for one name: addresses (maybe none) or NXDOMAIN."""

    a: tuple[dns.rdata.Rdata, ...] = ()
    aaaa: tuple[dns.rdata.Rdata, ...] = ()
    ttl: int = DEFAULT_TTL
    exists: bool = True


_NXDOMAIN = _Records(exists=False)


def _name(name: str | dns.name.Name) -> dns.name.Name:
    """A name as the table keys it (dnspython names compare case-insensitively)."""
    if isinstance(name, dns.name.Name):
        return name if name.is_absolute() else name.concatenate(dns.name.root)
    return dns.name.from_text(name)


def _sendto(sock: socket.socket, peer: tuple[Any, ...], reply: bytes) -> None:
    sock.sendto(reply, peer)


def _rdtype(rdtype: str | int) -> int:
    return int(dns.rdatatype.RdataType.make(rdtype))


class _Scheduler:
    """Runs callables at a monotonic deadline on one thread (delayed answers)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, name="outlast-dnsserver-delay", daemon=True
        )
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], object]) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify()

    def close(self) -> None:
        """Drop what is pending and join the thread."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                if not self._heap:
                    self._cond.wait()
                    continue
                due = self._heap[0][0] - time.monotonic()
                if due > 0:
                    self._cond.wait(due)
                    continue
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # a client gone away must not stop other answers
                logger.debug("delayed answer failed", exc_info=True)


class DNSServer:
    """An authoritative DNS server for tests, on loopback, in background threads.

    Use it as a context manager (or call `start()` and `close()`)::

        with DNSServer() as dns_server:
            dns_server.set("api.example.com", ["192.0.2.10", "2001:db8::10"])
            os.environ["OUTLAST_DNS_PROVIDERS"] = dns_server.provider
            ...
            dns_server.empty("api.example.com")  # the record goes empty
            dns_server.fail("drop")  # the server goes silent

    Names are case-insensitive, with or without a trailing dot. A name never
    configured answers NXDOMAIN. The server is authoritative for the root, so
    negative answers carry a root SOA whose TTL and minimum are *negative_ttl*.
    Every method may be called from any thread while the server is answering.

    Added in 0.1.0.
    """

    def __init__(
        self,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        negative_ttl: int = DEFAULT_NEGATIVE_TTL,
    ) -> None:
        """Prepare a server; nothing is bound until `start()`.

        *address* is the loopback address to listen on (``"127.0.0.1"`` or
        ``"::1"``); *port* ``0`` picks a free port shared by UDP and TCP;
        *negative_ttl* is the TTL and minimum of the SOA sent with NODATA and
        NXDOMAIN answers, in seconds.

        Added in 0.1.0.
        """
        ip = ipaddress.ip_address(address)
        if negative_ttl < 0:
            raise ValueError(f"negative_ttl must be >= 0, got {negative_ttl!r}")
        self._address = str(ip)
        self._family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        self._requested_port = port
        self._port = 0
        self._soa = dns.rrset.from_rdata(
            _SOA_OWNER,
            negative_ttl,
            dns.rdata.from_text(
                dns.rdataclass.IN,
                dns.rdatatype.SOA,
                f"{_SOA_MNAME} {_SOA_RNAME} 1 3600 600 86400 {negative_ttl}",
            ),
        )

        self._lock = threading.Lock()
        self._records: dict[dns.name.Name, _Records] = {}
        self._fail_all: FailMode | None = None
        self._fail_names: dict[dns.name.Name, FailMode] = {}
        #: Faults for one record type: (name or None for every name, type) -> mode.
        self._fail_types: dict[tuple[dns.name.Name | None, int], FailMode] = {}
        self._delay_all = 0.0
        self._delay_names: dict[dns.name.Name, float] = {}
        self._delay_types: dict[tuple[dns.name.Name | None, int], float] = {}
        self._truncate = False
        self._queries = 0
        self._tcp_queries = 0
        self._counts: Counter[tuple[dns.name.Name, int]] = Counter()

        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._scheduler: _Scheduler | None = None
        self._conn_threads: set[threading.Thread] = set()
        self._conns: set[socket.socket] = set()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> DNSServer:
        """Bind UDP and TCP on one port and start answering; returns the server.

        Added in 0.1.0.
        """
        if self._thread is not None or self._closed:
            raise RuntimeError("a DNSServer can be started only once")
        self._udp, self._tcp = self._bind()
        self._port = self._udp.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._scheduler = _Scheduler()
        self._thread = threading.Thread(
            target=self._serve, name=f"outlast-dnsserver-{self._port}", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop answering, join every thread and close every socket. Idempotent.

        Delayed answers not yet sent are dropped.

        Added in 0.1.0.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            conns = list(self._conns)
            threads = list(self._conn_threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join()
        if self._scheduler is not None:
            self._scheduler.close()
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()

    def __enter__(self) -> DNSServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("serving" if self._thread else "new")
        return f"<DNSServer {self._address}:{self._port} {state}>"

    # -- where it listens ------------------------------------------------------------

    @property
    def address(self) -> str:
        """The IP address the server listens on. Added in 0.1.0."""
        return self._address

    @property
    def port(self) -> int:
        """The port, the same for UDP and TCP; set by `start()`. Added in 0.1.0."""
        if not self._port:
            raise RuntimeError("the DNSServer is not started")
        return self._port

    @property
    def provider(self) -> str:
        """An ``OUTLAST_DNS_PROVIDERS`` entry for this server over UDP.

        For example ``"udp://127.0.0.1:53535"``. Added in 0.1.0.
        """
        return f"udp://{self._hostport()}"

    @property
    def tcp_provider(self) -> str:
        """An ``OUTLAST_DNS_PROVIDERS`` entry for this server over TCP. Added in 0.1.0."""
        return f"tcp://{self._hostport()}"

    def _hostport(self) -> str:
        host = f"[{self._address}]" if self._family == socket.AF_INET6 else self._address
        return f"{host}:{self.port}"

    # -- what it answers -------------------------------------------------------------

    def set(self, name: str, addresses: Iterable[str], ttl: int = DEFAULT_TTL) -> None:
        """Answer *name* with these IPv4 (A) and IPv6 (AAAA) addresses.

        Replaces whatever *name* had. An empty *addresses* is the same as `empty`.

        Added in 0.1.0.
        """
        if ttl < 0:
            raise ValueError(f"ttl must be >= 0, got {ttl!r}")
        a: list[dns.rdata.Rdata] = []
        aaaa: list[dns.rdata.Rdata] = []
        for text in addresses:
            ip = ipaddress.ip_address(text)
            if ip.version == 4:
                a.append(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, str(ip)))
            else:
                aaaa.append(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.AAAA, str(ip)))
        records = _Records(a=tuple(a), aaaa=tuple(aaaa), ttl=ttl)
        key = _name(name)
        with self._lock:
            self._records[key] = records

    def empty(self, name: str) -> None:
        """*name* exists but has no addresses: NOERROR, no answer, SOA in authority.

        This is the October 2025 DynamoDB failure. Added in 0.1.0.
        """
        key = _name(name)
        with self._lock:
            self._records[key] = _Records()

    def nxdomain(self, name: str) -> None:
        """*name* does not exist: NXDOMAIN with SOA in authority.

        Names never configured already answer NXDOMAIN; this one forgets *name*.

        Added in 0.1.0.
        """
        key = _name(name)
        with self._lock:
            self._records[key] = _NXDOMAIN

    def fail(
        self, mode: FailMode | None, name: str | None = None, rdtype: str | int | None = None
    ) -> None:
        """Misbehave for every name, or for *name* only; for every type, or *rdtype* only.

        *mode* is ``"servfail"`` (answer SERVFAIL), ``"refused"`` (answer REFUSED),
        ``"drop"`` (never answer: a blackhole), ``"malformed"`` (answer junk),
        ``"truncate"`` (UDP answers truncated, TCP complete) or ``None`` to heal.
        ``fail(None)`` without a name or type heals everything, including the faults
        set one by one. With *rdtype* (``"A"``, ``"AAAA"``) only queries of that type
        misbehave (an AAAA-dropping middlebox: ``fail("drop", rdtype="AAAA")``); a
        per-type fault wins over a per-name one.

        Added in 0.1.0.
        """
        if mode is not None and mode not in _FAIL_MODES:
            raise ValueError(f"mode must be one of {sorted(_FAIL_MODES)} or None, got {mode!r}")
        with self._lock:
            if rdtype is not None:
                key = (None if name is None else _name(name), _rdtype(rdtype))
                if mode is None:
                    self._fail_types.pop(key, None)
                else:
                    self._fail_types[key] = mode
                return
            if name is None:
                self._fail_all = mode
                if mode is None:
                    self._fail_names.clear()
                    self._fail_types.clear()
            elif mode is None:
                self._fail_names.pop(_name(name), None)
            else:
                self._fail_names[_name(name)] = mode

    def delay(
        self, seconds: float, name: str | None = None, rdtype: str | int | None = None
    ) -> None:
        """Send every answer (or *name*'s, or *rdtype*'s) *seconds* late; ``0`` for none.

        A delayed answer holds up no other query. ``delay(0)`` without a name or
        type clears every delay.

        Added in 0.1.0.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        with self._lock:
            if rdtype is not None:
                key = (None if name is None else _name(name), _rdtype(rdtype))
                if seconds:
                    self._delay_types[key] = float(seconds)
                else:
                    self._delay_types.pop(key, None)
                return
            if name is None:
                self._delay_all = float(seconds)
                if not seconds:
                    self._delay_names.clear()
                    self._delay_types.clear()
            elif not seconds:
                self._delay_names.pop(_name(name), None)
            else:
                self._delay_names[_name(name)] = float(seconds)

    def truncate(self, on: bool = True) -> None:
        """Answer UDP with the TC bit and no records, so clients retry over TCP.

        TCP answers stay complete. Added in 0.1.0.
        """
        with self._lock:
            self._truncate = bool(on)

    # -- what it was asked --------------------------------------------------------

    @property
    def queries(self) -> int:
        """Queries received (UDP and TCP, answered or not) since the last reset.

        Added in 0.1.0.
        """
        with self._lock:
            return self._queries

    @property
    def tcp_queries(self) -> int:
        """Of `queries`, those received over TCP. Added in 0.1.0."""
        with self._lock:
            return self._tcp_queries

    def queries_for(self, name: str, rdtype: str | int | None = None) -> int:
        """Queries received for *name* (of type *rdtype*, e.g. ``"A"``, or any type).

        Added in 0.1.0.
        """
        key = _name(name)
        with self._lock:
            if rdtype is not None:
                return self._counts[(key, _rdtype(rdtype))]
            return sum(n for (qname, _), n in self._counts.items() if qname == key)

    def reset_counts(self) -> None:
        """Set every query count back to zero. Added in 0.1.0."""
        with self._lock:
            self._queries = 0
            self._tcp_queries = 0
            self._counts.clear()

    # -- serving -------------------------------------------------------------------

    def _bind(self) -> tuple[socket.socket, socket.socket]:
        """A UDP and a TCP socket on the same port (port 0: retry until one is free)."""
        attempts = 1 if self._requested_port else 20
        last: OSError | None = None
        for _ in range(attempts):
            udp = socket.socket(self._family, socket.SOCK_DGRAM)
            try:
                udp.bind((self._address, self._requested_port))
                port = udp.getsockname()[1]
                tcp = socket.socket(self._family, socket.SOCK_STREAM)
                try:
                    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    tcp.bind((self._address, port))
                    tcp.listen(128)
                except OSError:
                    tcp.close()
                    raise
            except OSError as exc:
                udp.close()
                last = exc
                continue
            udp.setblocking(False)
            tcp.setblocking(False)
            return udp, tcp
        assert last is not None
        raise last

    def _serve(self) -> None:
        assert self._udp is not None
        assert self._tcp is not None
        assert self._wake_r is not None
        udp, tcp, wake = self._udp, self._tcp, self._wake_r
        with selectors.DefaultSelector() as sel:
            sel.register(udp, selectors.EVENT_READ)
            sel.register(tcp, selectors.EVENT_READ)
            sel.register(wake, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(_POLL_INTERVAL):
                    if key.fileobj is udp:
                        self._drain_udp(udp)
                    elif key.fileobj is tcp:
                        self._accept(tcp)

    def _drain_udp(self, udp: socket.socket) -> None:
        for _ in range(_UDP_BURST):
            try:
                wire, peer = udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ICMP port unreachable reported on Linux
                continue
            try:
                self._handle(wire, functools.partial(_sendto, udp, peer), tcp=False)
            except Exception:  # never let one packet stop the server
                logger.debug("DNSServer could not handle a UDP packet", exc_info=True)

    def _accept(self, tcp: socket.socket) -> None:
        try:
            conn, _ = tcp.accept()
        except OSError:
            return
        with self._lock:
            self._conn_threads = {t for t in self._conn_threads if t.is_alive()}
            if len(self._conn_threads) >= _MAX_TCP_CONNECTIONS or self._stop.is_set():
                conn.close()
                return
            thread = threading.Thread(
                target=self._serve_tcp, args=(conn,), name="outlast-dnsserver-tcp", daemon=True
            )
            self._conns.add(conn)
            self._conn_threads.add(thread)
        thread.start()

    def _serve_tcp(self, conn: socket.socket) -> None:
        send_lock = threading.Lock()

        def send(reply: bytes) -> None:
            with send_lock:
                conn.sendall(struct.pack("!H", len(reply)) + reply)

        buf = b""
        idle_since = time.monotonic()
        try:
            conn.settimeout(_POLL_INTERVAL)
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65535)
                except TimeoutError:
                    if time.monotonic() - idle_since > _TCP_IDLE_TIMEOUT:
                        return
                    continue
                if not chunk:
                    return
                idle_since = time.monotonic()
                buf += chunk
                while len(buf) >= 2:
                    (size,) = struct.unpack("!H", buf[:2])
                    if len(buf) < 2 + size:
                        break
                    wire, buf = buf[2 : 2 + size], buf[2 + size :]
                    try:
                        self._handle(wire, send, tcp=True)
                    except OSError:
                        return
                    except Exception:
                        logger.debug("DNSServer could not handle a TCP query", exc_info=True)
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _handle(self, wire: bytes, send: Callable[[bytes], object], *, tcp: bool) -> None:
        """Answer one query, now or later, or not at all. Malformed input is ignored."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return
        if query.flags & dns.flags.QR or len(query.question) != 1:
            return
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        with self._lock:
            self._queries += 1
            if tcp:
                self._tcp_queries += 1
            self._counts[(qname, qtype)] += 1
            mode = self._fail_types.get(
                (qname, qtype),
                self._fail_types.get((None, qtype), self._fail_names.get(qname, self._fail_all)),
            )
            delay = self._delay_types.get(
                (qname, qtype),
                self._delay_types.get((None, qtype), self._delay_names.get(qname, self._delay_all)),
            )
            records = self._records.get(qname, _NXDOMAIN)
            truncate = (self._truncate or mode == "truncate") and not tcp
        if mode == "drop":
            return
        if mode == "malformed":
            send(wire[:2] + b"\x81\x80\x00\x01\x00\x05" + b"\xff" * 7)
            return
        reply = self._reply(query, qname, qtype, mode, records, truncate, tcp)
        if delay > 0 and self._scheduler is not None:
            self._scheduler.call_later(delay, lambda: send(reply))
        else:
            send(reply)

    def _reply(
        self,
        query: dns.message.Message,
        qname: dns.name.Name,
        qtype: int,
        mode: FailMode | None,
        records: _Records,
        truncate: bool,
        tcp: bool,
    ) -> bytes:
        response = dns.message.make_response(query)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        if mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
            return response.to_wire()
        if mode == "refused":
            response.set_rcode(dns.rcode.REFUSED)
            return response.to_wire()
        response.flags |= dns.flags.AA
        if truncate:
            response.flags |= dns.flags.TC
            return response.to_wire()
        if not records.exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self._soa)
        else:
            rdatas: tuple[dns.rdata.Rdata, ...] = ()
            if qtype in (dns.rdatatype.A, dns.rdatatype.ANY):
                rdatas += records.a
            if qtype in (dns.rdatatype.AAAA, dns.rdatatype.ANY):
                rdatas += records.aaaa
            if not rdatas:
                response.authority.append(self._soa)
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                group = [rd for rd in rdatas if rd.rdtype == rdtype]
                if group:
                    response.answer.append(dns.rrset.from_rdata_list(qname, records.ttl, group))
        udp_limit = max(512, query.payload) if query.edns >= 0 else 512
        limit = 65535 if tcp else udp_limit
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.answer.clear()
            response.authority.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()
