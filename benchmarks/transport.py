"""What outlast's transports cost over plain httpx, on loopback.

A minimal HTTP/1.1 server runs in another process. In the same run, alternating
rounds, each transport sends GETs: over a kept-alive connection, and with a new
connection per request; sync and async. outlast resolves a name (served by a DNS
server on loopback, so a cache hit after the first request) and goes through its
default policy; plain httpx is given the IP. Prints per-request times (best round)
and the ratios against the targets, and the client process's CPU time per request (on a
shared machine, the steadier measure of what outlast adds). Last, the Python calls per
request, which are the same on any machine: httpx checks every character of a URL, so
a longer name costs calls of its own; the last line gives both clients the same URL
(``localhost``, which plain httpx resolves itself), leaving only outlast's calls.
Run: ``PYTHONPATH=src python benchmarks/transport.py``.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import multiprocessing
import pstats
import statistics
import time
from collections.abc import Callable

import httpx
from _replay import serve

from outlast import Resolver
from outlast.http import AsyncTransport, Transport
from outlast.testing import DNSServer

NAME = "bench.outlast.test"
ROUNDS = 7
KEEPALIVE_N = 1500
FRESH_N = 400


Round = tuple[float, float]  # seconds per request: wall clock, this process's CPU


def _sync_round(transport: httpx.BaseTransport, url: str, n: int) -> Round:
    with httpx.Client(transport=transport) as client:
        client.get(url)  # warm: resolve, connect
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            client.get(url)
        return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


def _async_round(make: Callable[[], httpx.AsyncBaseTransport], url: str, n: int) -> Round:
    async def main() -> Round:
        async with httpx.AsyncClient(transport=make()) as client:
            await client.get(url)
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                await client.get(url)
            return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n

    return asyncio.run(main())


def _compare(
    label: str,
    plain: Callable[[], Round],
    ours: Callable[[], Round],
    target: float,
) -> tuple[float, float, float]:
    """Best round of each (wall clock), and the client's CPU per request (best round).

    On a shared machine the wall clock swings with other load; the client process's
    CPU time is what outlast adds, and is steadier.
    """
    plain_times, our_times = [], []
    for _ in range(ROUNDS):  # alternate so drift hits both alike
        plain_times.append(plain())
        our_times.append(ours())
    p, o = min(t for t, _ in plain_times), min(t for t, _ in our_times)
    p_cpu, o_cpu = min(c for _, c in plain_times), min(c for _, c in our_times)
    ratio = o / p
    median = statistics.median(t for t, _ in our_times) / statistics.median(
        t for t, _ in plain_times
    )
    print(
        f"  {label:<24} httpx {p * 1e6:7.1f} us   outlast {o * 1e6:7.1f} us   "
        f"ratio {ratio:5.3f} (target <= {target}, median {median:5.3f})   "
        f"client CPU {p_cpu * 1e6:6.1f} vs {o_cpu * 1e6:6.1f} us, ratio {o_cpu / p_cpu:5.3f}"
    )
    return p, o, ratio


def _calls(transport: httpx.BaseTransport, url: str, n: int = 200) -> float:
    """Python function calls per request (cProfile's count): deterministic, load-proof."""
    with httpx.Client(transport=transport) as client:
        client.get(url)
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(n):
            client.get(url)
        profile.disable()
    total: int = pstats.Stats(profile, stream=io.StringIO()).total_calls  # type: ignore[attr-defined]
    return total / n


def _count_calls(
    label: str, plain: httpx.BaseTransport, ours: httpx.BaseTransport, urls: tuple[str, str]
) -> None:
    p, o = _calls(plain, urls[0]), _calls(ours, urls[1])
    print(f"  {label:<24} httpx {p:6.0f}   outlast {o:6.0f}   (+{o - p:.0f}, {o / p:5.3f}x)")


def main() -> None:
    started = time.monotonic()
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=serve, args=(send,), daemon=True)
    server.start()
    port = receive.recv()
    fresh = httpx.Limits(max_keepalive_connections=0)
    try:
        with DNSServer() as dns_server:
            dns_server.set(NAME, ["127.0.0.1"], ttl=3600)
            dns_server.set("localhost", ["127.0.0.1"], ttl=3600)
            with Resolver(providers=[dns_server.provider]) as resolver:
                ip_url = f"http://127.0.0.1:{port}/"
                name_url = f"http://{NAME}:{port}/"
                print(f"transport benchmark: {ROUNDS} rounds, best round per request")
                print("sync")
                _compare(
                    "keep-alive GET",
                    lambda: _sync_round(httpx.HTTPTransport(), ip_url, KEEPALIVE_N),
                    lambda: _sync_round(Transport(resolver=resolver), name_url, KEEPALIVE_N),
                    1.03,
                )
                _compare(
                    "new connection per GET",
                    lambda: _sync_round(httpx.HTTPTransport(limits=fresh), ip_url, FRESH_N),
                    lambda: _sync_round(
                        Transport(limits=fresh, resolver=resolver), name_url, FRESH_N
                    ),
                    1.05,
                )
                print("async (asyncio)")
                _compare(
                    "keep-alive GET",
                    lambda: _async_round(httpx.AsyncHTTPTransport, ip_url, KEEPALIVE_N),
                    lambda: _async_round(
                        lambda: AsyncTransport(resolver=resolver), name_url, KEEPALIVE_N
                    ),
                    1.03,
                )
                _compare(
                    "new connection per GET",
                    lambda: _async_round(
                        lambda: httpx.AsyncHTTPTransport(limits=fresh), ip_url, FRESH_N
                    ),
                    lambda: _async_round(
                        lambda: AsyncTransport(limits=fresh, resolver=resolver),
                        name_url,
                        FRESH_N,
                    ),
                    1.05,
                )
                print("sync, Python calls per request (the same on any machine)")
                urls = (ip_url, name_url)
                _count_calls(
                    "keep-alive GET", httpx.HTTPTransport(), Transport(resolver=resolver), urls
                )
                _count_calls(
                    "new connection per GET",
                    httpx.HTTPTransport(limits=fresh),
                    Transport(limits=fresh, resolver=resolver),
                    urls,
                )
                same = f"http://localhost:{port}/"
                _count_calls(
                    "keep-alive, same URL",
                    httpx.HTTPTransport(),
                    Transport(resolver=resolver),
                    (same, same),
                )
    finally:
        server.terminate()
        server.join(5)
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
