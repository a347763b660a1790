"""What ``outlast.aiohttp.ClientSession`` costs over a plain ``aiohttp.ClientSession``,
and what it buys.

A minimal HTTP/1.1 server runs in another process on loopback. In the same run:

1. Latency: alternating rounds of GETs over a kept-alive connection through a plain
   ``aiohttp.ClientSession`` and through ``outlast.aiohttp.ClientSession``
   (resolving a name served by a DNS server on loopback, default policy in a client
   middleware). Both ask for the same name (the plain session's connector resolves it
   once through the same resolver). Per-request time of the best round, and the
   median of each pair of neighbouring rounds' ratio (steadier on a shared machine,
   whose load drifts between rounds); target <= 1.05x.
   Then the Python calls per request on each side, counted by ``cProfile`` over one
   round (a coroutine counts once per resumption): what the overhead is made of.
2. Availability through the empty-record replay, in a network namespace whose
   ``/etc/resolv.conf`` names a DNS server on loopback (tests/netns.py,
   tests/system_replay.py; needs root and ``unshare``): the record (TTL 2 s) is good
   for 2 s, empty for 10 s, good again for 2 s; each client makes a call every 100 ms
   on a new connection (``force_close``); a call that succeeds within 2 s counts. The
   plain side is aiohttp as shipped (its connector's own 10 s DNS cache in front of
   the system resolver, glibc's ``getaddrinfo``); the outlast side is
   ``outlast.aiohttp.ClientSession()`` with ``OUTLAST_DNS_PROVIDERS`` naming the same
   nameserver.
3. One call once the record has been empty 11 s (each side made one call while it was
   good, on the session it then uses): how long it took and what it raised.

About 30 s in all. Run: ``PYTHONPATH=src python benchmarks/aiohttp_session.py``.
"""

from __future__ import annotations

import asyncio
import cProfile
import multiprocessing
import pstats
import statistics
import time

import aiohttp
from _replay import AFTER, EMPTY, GOOD, INTERVAL, WITHIN, availability, late_line, netns, row, serve

import outlast.aiohttp
from outlast import Resolver
from outlast.testing import DNSServer

NAME = "bench.outlast.test"
ROUNDS = 40
CALLS = 200


async def _round(session: aiohttp.ClientSession, url: str) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        async with session.get(url) as response:
            await response.read()
    return (time.perf_counter() - start) / CALLS


async def _calls(session: aiohttp.ClientSession, url: str) -> float:
    """Python calls per request (cProfile's count) over one round."""
    profile = cProfile.Profile()
    profile.enable()
    await _round(session, url)
    profile.disable()
    return float(pstats.Stats(profile).total_calls) / CALLS  # type: ignore[attr-defined]


async def _latency(port: int, dns: DNSServer) -> tuple[float, float, float, float, float]:
    dns.set(NAME, ["127.0.0.1"], ttl=300)
    resolver = Resolver(providers=[dns.provider])
    # The same name on both sides (aiohttp does more per request for a name than for an
    # IP: cookie filtering); the plain connector resolves it once, then keeps it alive.
    plain_url = our_url = f"http://{NAME}:{port}/"
    plain_connector = aiohttp.TCPConnector(resolver=outlast.aiohttp.Resolver(resolver))
    async with (
        aiohttp.ClientSession(connector=plain_connector) as plain,
        outlast.aiohttp.ClientSession(resolver=resolver) as ours,
    ):
        await _round(plain, plain_url), await _round(ours, our_url)  # warm both
        plain_times, our_times = [], []
        for _ in range(ROUNDS):
            plain_times.append(await _round(plain, plain_url))
            our_times.append(await _round(ours, our_url))
        plain_calls, our_calls = await _calls(plain, plain_url), await _calls(ours, our_url)
    await resolver.aclose()
    paired = statistics.median(o / p for o, p in zip(our_times, plain_times, strict=True))
    return min(plain_times), min(our_times), paired, plain_calls, our_calls


def main() -> None:
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=serve, args=(send,), daemon=True)
    server.start()
    try:
        port = receive.recv()
        with DNSServer() as dns:
            plain, ours, paired, plain_calls, our_calls = asyncio.run(_latency(port, dns))
            print(f"GET, kept-alive connection, best of {ROUNDS} rounds of {CALLS}:")
            print(
                f"  aiohttp.ClientSession          {plain * 1e6:8.1f} us  {plain_calls:5.0f} calls"
            )
            print(f"  outlast.aiohttp.ClientSession  {ours * 1e6:8.1f} us  {our_calls:5.0f} calls")
            print(f"  ratio                          {ours / plain:8.3f}x   (target <= 1.05x)")
            print(f"  median ratio of paired rounds  {paired:8.3f}x")
            print(f"  Python calls per request       +{our_calls - plain_calls:.0f}")
        reason = netns.unavailable()
        if reason is not None:
            print(f"empty-record replay on the system resolver skipped: {reason}")
            return
        results, late = availability("aiohttp")
        print(
            f"empty-record replay, system resolver in a network namespace: record TTL 2 s, "
            f"good {GOOD:g} s, empty {EMPTY:g} s, good {AFTER:g} s; a call every "
            f"{INTERVAL * 1e3:.0f} ms on a new connection, success within {WITHIN:g} s "
            f"counts ({len(results['plain'])} calls each):"
        )
        print(row("aiohttp (10 s DNS cache)", results["plain"], 34))
        print(row("outlast.aiohttp.ClientSession", results["outlast"], 34))
        print("one call once the record has been empty 11 s:")
        print(late_line("aiohttp (10 s DNS cache)", late["plain"], 34))
        print(late_line("outlast.aiohttp.ClientSession", late["outlast"], 34))
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
