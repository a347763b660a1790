"""What ``outlast.requests.Session`` costs over a plain ``requests.Session``, and what it buys.

A minimal HTTP/1.1 server runs in another process on loopback. In the same run:

1. Latency: alternating rounds of GETs over a kept-alive connection through a plain
   ``requests.Session`` (given the IP) and through ``outlast.requests.Session``
   (resolving a name served by a DNS server on loopback, default policy). Per-request
   time of the best round; target <= 1.05x.
2. Availability through the empty-record replay (the October 2025 us-east-1 failure),
   in a network namespace whose ``/etc/resolv.conf`` names a DNS server on loopback
   (tests/netns.py, tests/system_replay.py; needs root and ``unshare``): the record
   (TTL 2 s) is good for 2 s, empty for 10 s, good again for 2 s; each client makes a
   call every 100 ms on a new connection; a call that succeeds within 2 s counts. The
   plain side is ``requests.get`` as shipped, resolving through the system resolver
   (glibc's ``getaddrinfo``); the outlast side is ``outlast.requests.Session()`` with
   ``OUTLAST_DNS_PROVIDERS`` naming the same nameserver.
3. One call once the record has been empty 11 s (each side made one call while it was
   good): how long it took and what it raised.

About 40 s in all. Run: ``PYTHONPATH=src python benchmarks/requests_session.py``.
"""

from __future__ import annotations

import multiprocessing
import time

import requests
from _replay import AFTER, EMPTY, GOOD, INTERVAL, WITHIN, availability, late_line, netns, row, serve

import outlast.requests
from outlast import Resolver
from outlast.testing import DNSServer

NAME = "bench.outlast.test"
ROUNDS = 40
CALLS = 200


def _round(session: requests.Session, url: str) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        session.get(url)
    return (time.perf_counter() - start) / CALLS


def _latency(port: int, dns: DNSServer) -> tuple[float, float]:
    dns.set(NAME, ["127.0.0.1"], ttl=300)
    resolver = Resolver(providers=[dns.provider])
    plain = requests.Session()
    ours = outlast.requests.Session(resolver=resolver)
    plain_url, our_url = f"http://127.0.0.1:{port}/", f"http://{NAME}:{port}/"
    _round(plain, plain_url), _round(ours, our_url)  # warm both
    plain_times, our_times = [], []
    for _ in range(ROUNDS):
        plain_times.append(_round(plain, plain_url))
        our_times.append(_round(ours, our_url))
    plain.close()
    ours.close()
    resolver.close()
    return min(plain_times), min(our_times)


def main() -> None:
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=serve, args=(send,), daemon=True)
    server.start()
    try:
        port = receive.recv()
        with DNSServer() as dns:
            plain, ours = _latency(port, dns)
            print(f"GET, kept-alive connection, best of {ROUNDS} rounds of {CALLS}:")
            print(f"  requests.Session          {plain * 1e6:8.1f} us")
            print(f"  outlast.requests.Session  {ours * 1e6:8.1f} us")
            print(f"  ratio                     {ours / plain:8.3f}x   (target <= 1.05x)")
        reason = netns.unavailable()
        if reason is not None:
            print(f"empty-record replay on the system resolver skipped: {reason}")
            return
        results, late = availability("requests")
        print(
            f"empty-record replay, system resolver in a network namespace: record TTL 2 s, "
            f"good {GOOD:g} s, empty {EMPTY:g} s, good {AFTER:g} s; a call every "
            f"{INTERVAL * 1e3:.0f} ms on a new connection, success within {WITHIN:g} s "
            f"counts ({len(results['plain'])} calls each):"
        )
        print(row("requests.get", results["plain"], 28))
        print(row("outlast.requests.Session", results["outlast"], 28))
        print("one call once the record has been empty 11 s:")
        print(late_line("requests.get", late["plain"], 28))
        print(late_line("outlast.requests.Session", late["outlast"], 28))
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
