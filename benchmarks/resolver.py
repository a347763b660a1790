"""Resolver benchmarks: outlast against what a user would otherwise pick, in one run.

    python benchmarks/resolver.py            # about 1.5 minutes
    python benchmarks/resolver.py --quick    # shorter runs, for a smoke test
    python benchmarks/resolver.py --memory 1000000   # the memory bound (3 minutes)

Everything runs on loopback: DNS servers are outlast.testing.DNSServer instances (and
a deliberately slow one, below) started here. Each section prints the figures and the
ratio; docs/resolver.md keeps the latest figures.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import threading
import time
from collections.abc import Callable

import dns.exception
import dns.message
import dns.rcode
import dns.resolver

import outlast
from outlast.dns import Positive
from outlast.testing import DNSServer


def dnspython_resolver(*servers: DNSServer, cache: bool = True) -> dns.resolver.Resolver:
    """dnspython's stub resolver pointed at ``servers``, with its LRUCache unless told not to."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [s.address for s in servers]
    resolver.nameserver_ports = {s.address: s.port for s in servers}
    if cache:
        resolver.cache = dns.resolver.LRUCache()
    return resolver


def per_call(fn: Callable[[], object], n: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def bench_cache_hit(quick: bool) -> None:
    n = 20_000 if quick else 200_000
    with DNSServer() as server:
        server.set("api.bench.test", ["127.0.0.10"], ttl=3600)
        ours = outlast.Resolver(providers=[server.provider])
        theirs = dnspython_resolver(server)
        outlast_s = per_call(lambda: ours.resolve("api.bench.test"), n)
        dnspython_s = per_call(lambda: theirs.resolve("api.bench.test", "A"), n // 10)
        ours.close()
    print("cache hit")
    print(f"  outlast.Resolver.resolve      {outlast_s * 1e6:8.2f} us")
    print(f"  dnspython Resolver + LRUCache {dnspython_s * 1e6:8.2f} us")
    print(f"  ratio outlast/dnspython       {outlast_s / dnspython_s:8.3f}x   (target <= 0.1x)")


def bench_blackholed_first_provider(quick: bool) -> None:
    lookups = 5 if quick else 10
    with DNSServer(address="127.0.0.1") as dead, DNSServer(address="127.0.0.2") as good:
        dead.fail("drop")
        for i in range(lookups):
            good.set(f"n{i}.bench.test", ["127.0.0.10"])
        ours = outlast.Resolver(providers=[dead.provider, good.provider])
        outlast_times = []
        for i in range(lookups):
            start = time.perf_counter()
            ours.resolve(f"n{i}.bench.test")
            outlast_times.append(time.perf_counter() - start)
        ours.close()
        theirs = dnspython_resolver(dead, good, cache=False)
        dnspython_times = []
        for i in range(3):
            start = time.perf_counter()
            theirs.resolve(f"n{i}.bench.test", "A")
            dnspython_times.append(time.perf_counter() - start)
    ours_ms = statistics.median(outlast_times) * 1e3
    theirs_ms = statistics.median(dnspython_times) * 1e3
    print("cold lookup, first provider blackholed")
    print(
        f"  outlast  median {ours_ms:7.1f} ms  first {outlast_times[0] * 1e3:7.1f} ms "
        f"(hedged at 150 ms; ejected after 2 timeouts)   (target median <= 300 ms)"
    )
    print(f"  dnspython defaults median {theirs_ms:7.1f} ms")
    print(f"  ratio outlast/dnspython   {ours_ms / theirs_ms:7.3f}x")


class SlowUpstream:
    """A UDP DNS server that answers one query at a time, 20 per second (50 ms each)."""

    def __init__(self, name: str, address: str) -> None:
        self.name, self.address = name, address
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.queries += 1
            time.sleep(0.05)
            query = dns.message.from_wire(wire)
            reply = dns.message.make_response(query)
            question = query.question[0]
            if question.rdtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", self.address))
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def herd(resolve: Callable[[], object], n: int) -> int:
    ok = 0
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def worker() -> None:
        nonlocal ok
        barrier.wait()
        try:
            resolve()
        except (outlast.ResolveError, dns.exception.DNSException):
            return
        with lock:
            ok += 1

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok


def bench_thundering_herd(quick: bool) -> None:
    upstream = SlowUpstream("herd.bench.test", "127.0.0.10")
    ours = outlast.Resolver(providers=[f"udp://127.0.0.1:{upstream.port}"], timeout=5)
    ours_ok = herd(lambda: ours.resolve("herd.bench.test"), 100)
    ours.close()
    ours_queries = upstream.queries
    upstream.close()

    upstream = SlowUpstream("herd.bench.test", "127.0.0.10")
    theirs = dns.resolver.Resolver(configure=False)
    theirs.nameservers = ["127.0.0.1"]
    theirs.nameserver_ports = {"127.0.0.1": upstream.port}
    theirs.cache = dns.resolver.LRUCache()
    theirs.lifetime = 2.0
    theirs_ok = herd(lambda: theirs.resolve("herd.bench.test", "A"), 100)
    time.sleep(0.5)
    theirs_queries = upstream.queries
    upstream.close()
    print("100 concurrent cold lookups of one name, upstream answering 20 queries/s")
    print(
        f"  outlast   {ours_ok:3d}/100 answered, {ours_queries:3d} queries sent "
        "(A and AAAA: target 2)"
    )
    print(f"  dnspython {theirs_ok:3d}/100 answered, {theirs_queries:3d} queries sent (A only)")


class Replay:
    """Resolve every 50 ms through an outage; count usable answers and repair adoption."""

    def __init__(self, label: str, resolve: Callable[[], tuple[str, ...]]) -> None:
        self.label, self.resolve = label, resolve
        self.usable = self.total = 0
        self.adopted_at: float | None = None

    def run(self, stop: threading.Event, repaired: threading.Event, t0: float) -> None:
        while not stop.is_set():
            self.total += 1
            try:
                addresses = self.resolve()
            except (outlast.ResolveError, dns.exception.DNSException):
                addresses = ()
            if addresses:
                self.usable += 1
            if repaired.is_set() and self.adopted_at is None and "127.0.0.20" in addresses:
                self.adopted_at = time.monotonic() - t0
            time.sleep(0.05)


def bench_empty_record_replay(quick: bool) -> None:
    ttl, warm, outage, after = 5, 5.0, (10.0 if quick else 20.0), 6.0
    name = "dynamodb.bench.test"
    with DNSServer(negative_ttl=5) as server:
        server.set(name, ["127.0.0.10"], ttl=ttl)
        ours = outlast.Resolver(providers=[server.provider])
        ttl_cache = dnspython_resolver(server)
        fixed: dict[str, tuple[float, tuple[str, ...]]] = {}
        plain = dnspython_resolver(server, cache=False)

        def fixed_cache() -> tuple[str, ...]:
            held = fixed.get(name)
            if held and time.monotonic() - held[0] < 10:
                return held[1]
            addresses = tuple(r.address for r in plain.resolve(name, "A"))
            fixed[name] = (time.monotonic(), addresses)
            return addresses

        clients = [
            Replay("outlast", lambda: ours.resolve(name).addresses),
            Replay(
                "dnspython, TTL-honouring LRUCache",
                lambda: tuple(r.address for r in ttl_cache.resolve(name, "A")),
            ),
            Replay("fixed 10 s cache", fixed_cache),
        ]
        stop, repaired = threading.Event(), threading.Event()
        t0 = time.monotonic()
        threads = [threading.Thread(target=c.run, args=(stop, repaired, t0)) for c in clients]
        for t in threads:
            t.start()
        time.sleep(warm)
        server.empty(name)
        time.sleep(outage / 2)
        server.nxdomain(name)
        time.sleep(outage / 2)
        server.set(name, ["127.0.0.20"], ttl=ttl)
        repair_at = time.monotonic() - t0
        repaired.set()
        time.sleep(after)
        stop.set()
        for t in threads:
            t.join()
        ours.close()
    print(
        f"empty-record replay: TTL {ttl} s, {outage:.0f} s outage (empty, then NXDOMAIN), "
        "then repaired with a new address; a resolve every 50 ms"
    )
    for c in clients:
        adopt = "never" if c.adopted_at is None else f"{c.adopted_at - repair_at:5.1f} s"
        print(
            f"  {c.label:36s} usable {100 * c.usable / c.total:6.1f}% of {c.total} "
            f"resolves; repair adopted after {adopt}"
        )


class InstantProvider:
    """Answers every name at once: isolates the resolver's own memory and overhead."""

    name = "instant"

    async def lookup(self, host: str, timeout: float) -> Positive:
        return Positive(("10.0.0.1", "2001:db8::1"), 60.0, self.name)


def bench_memory(names: int) -> None:
    resolver = outlast.Resolver(providers=[InstantProvider()])
    size = resolver._table.maxsize
    for i in range(2 * size):  # fill the table first: what follows is growth
        resolver.resolve(f"warm{i}.bench.test")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    largest = 0
    for i in range(names):
        resolver.resolve(f"n{i}.bench.test")
        if i % 10_000 == 0:
            largest = max(largest, len(resolver._table))
    elapsed = time.perf_counter() - started
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    resolver.close()
    print(f"memory: {names:,} distinct names through resolve (cache size {size:,})")
    print(f"  largest table {largest:,} entries; peak RSS growth {growth:.1f} MiB")
    print(f"  {elapsed / names * 1e6:.0f} us per cold resolve through the background loop")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument(
        "--memory", type=int, metavar="N", help="only the memory run, with N names (10**6: 3 min)"
    )
    args = parser.parse_args()
    if args.memory:
        bench_memory(args.memory)
        return
    bench_cache_hit(args.quick)
    bench_blackholed_first_provider(args.quick)
    bench_thundering_herd(args.quick)
    bench_empty_record_replay(args.quick)


if __name__ == "__main__":
    main()
