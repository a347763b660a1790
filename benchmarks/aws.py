"""What ``outlast.aws.wrap`` costs over a plain boto3 client, and what it buys in an outage.

moto's server runs in another process on loopback. In the same run:

1. Latency: alternating rounds of DynamoDB ``get_item`` through a wrapped client
   (resolving a name served by a DNS server on loopback, default policy) and through
   the unwrapped client (given the IP). Per-call time of the best round; target <= 1.05x.
2. Availability through the empty-record replay: the names' records go empty for a
   while (the October 2025 us-east-1 failure mode) while each client calls ``get_item``
   every 20 ms on a new connection. outlast's resolver keeps the last-known-good
   addresses; the other client's resolver honours TTLs only (``keep_on_empty=0``,
   ``stale_ttl=0``), so it sees what a plain stub resolver would.

3. With aiobotocore installed (``outlast[aiobotocore]``), the same for aiobotocore:
   latency of a wrapped vs a plain client, the empty-record replay (plain clients ask
   the DNS server through a stub resolver behind aiohttp's DNS cache: its default 10 s,
   and off), and a server answering 500: requests per call and seconds per call of a
   plain client (aiobotocore's default retries) vs a wrapped one.

Run: ``PYTHONPATH=src python benchmarks/aws.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import logging
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import boto3
from botocore.config import Config

import outlast.aws
from outlast import Resolver
from outlast.testing import DNSServer

ROUNDS = 7
CALLS = 150
REPLAY_SECONDS = 4.0
EMPTY_FROM, EMPTY_UNTIL = 0.5, 3.0
INTERVAL = 0.02
TABLE = "bench"


def _serve(port_out: Any) -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port_out.send(server.get_host_and_port()[1])
    while True:
        time.sleep(3600)


def _client(url: str) -> Any:
    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=1, read_timeout=5),
    )


def _round(client: Any) -> float:
    key = {"pk": {"S": "k"}}
    start = time.perf_counter()
    for _ in range(CALLS):
        client.get_item(TableName=TABLE, Key=key)
    return (time.perf_counter() - start) / CALLS


def _latency(port: int, dns: DNSServer) -> tuple[float, float]:
    dns.set("bench.outlast.test", ["127.0.0.1"], ttl=300)
    resolver = Resolver(providers=[dns.provider])
    plain = _client(f"http://127.0.0.1:{port}")
    wrapped = outlast.aws.wrap(_client(f"http://bench.outlast.test:{port}"), resolver=resolver)
    plain.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    plain.put_item(TableName=TABLE, Item={"pk": {"S": "k"}, "v": {"S": "x" * 100}})
    _round(plain), _round(wrapped)  # warm both
    plain_times, wrapped_times = [], []
    for _ in range(ROUNDS):
        plain_times.append(_round(plain))
        wrapped_times.append(_round(wrapped))
    resolver.close()
    return min(plain_times), min(wrapped_times)


def _availability(port: int, dns: DNSServer) -> tuple[float, float, int]:
    names = {"outlast": "replay-outlast.outlast.test", "ttl-only": "replay-ttl.outlast.test"}
    for name in names.values():
        dns.set(name, ["127.0.0.1"], ttl=1)
    resolvers = {
        "outlast": Resolver(providers=[dns.provider], min_ttl=0.2, max_ttl=0.2),
        "ttl-only": Resolver(
            providers=[dns.provider], min_ttl=0.2, max_ttl=0.2, keep_on_empty=0, stale_ttl=0
        ),
    }
    clients = {
        label: outlast.aws.wrap(_client(f"http://{names[label]}:{port}"), resolver=resolvers[label])
        for label in names
    }
    ok = dict.fromkeys(names, 0)
    calls = 0
    start = time.monotonic()
    emptied = restored = False
    while (elapsed := time.monotonic() - start) < REPLAY_SECONDS:
        if not emptied and elapsed >= EMPTY_FROM:
            for name in names.values():
                dns.empty(name)
            emptied = True
        if not restored and elapsed >= EMPTY_UNTIL:
            for name in names.values():
                dns.set(name, ["127.0.0.1"], ttl=1)
            restored = True
        calls += 1
        for label, client in clients.items():
            client._endpoint.http_session._manager.clear()  # a new connection: resolve again
            try:
                client.get_item(TableName=TABLE, Key={"pk": {"S": "k"}})
                ok[label] += 1
            except Exception:
                pass
        time.sleep(INTERVAL)
    for resolver in resolvers.values():
        resolver.close()
    return ok["outlast"] / calls, ok["ttl-only"] / calls, calls


# -- aiobotocore ------------------------------------------------------------------------


class _Answer500(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hits = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).hits += 1
        self.send_response(500)
        self.send_header("content-type", "application/x-amz-json-1.0")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        return None


def _stub_resolver(server: DNSServer) -> Any:
    """aiohttp resolver asking ``server`` with dnspython's stub, no cache of its own."""
    import dns.exception
    import dns.resolver
    from aiohttp.abc import AbstractResolver

    stub = dns.resolver.Resolver(configure=False)
    stub.nameservers = [server.address]
    stub.nameserver_ports = {server.address: server.port}
    stub.lifetime = 1.0

    class Stub(AbstractResolver):
        async def resolve(self, host: str, port: int = 0, family: int = 0) -> list[Any]:
            try:
                answer = await asyncio.to_thread(stub.resolve, host, "A")
            except dns.exception.DNSException as exc:
                raise OSError(socket.EAI_NONAME, str(exc)) from exc
            return [
                {
                    "hostname": host,
                    "host": r.address,
                    "port": port,
                    "family": socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
                for r in answer
            ]

        async def close(self) -> None:
            return None

    return Stub()


@contextlib.asynccontextmanager
async def _aio_client(url: str, **connector: Any) -> AsyncIterator[Any]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(connect_timeout=1, read_timeout=5, connector_args=connector or None)
    async with get_session().create_client(
        "dynamodb",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    ) as client:
        yield client


async def _aio_round(client: Any) -> float:
    key = {"pk": {"S": "k"}}
    start = time.perf_counter()
    for _ in range(CALLS):
        await client.get_item(TableName=TABLE, Key=key)
    return (time.perf_counter() - start) / CALLS


async def _aio_latency(port: int, dns: DNSServer) -> tuple[float, float]:
    resolver = Resolver(providers=[dns.provider])
    async with (
        _aio_client(f"http://127.0.0.1:{port}") as plain,
        _aio_client(f"http://bench.outlast.test:{port}") as wrapped,
    ):
        outlast.aws.wrap(wrapped, resolver=resolver)
        await _aio_round(plain), await _aio_round(wrapped)  # warm both
        plain_times, wrapped_times = [], []
        for _ in range(ROUNDS):
            plain_times.append(await _aio_round(plain))
            wrapped_times.append(await _aio_round(wrapped))
    await resolver.aclose()
    return min(plain_times), min(wrapped_times)


async def _aio_availability(port: int, dns: DNSServer) -> dict[str, tuple[int, int]]:
    """Each client calls in its own task for the replay: (good calls, calls) per client.

    A call still running when the replay ends counts as a failed call.
    """
    labels = ("outlast", "aiohttp-cache-10s", "aiohttp-cache-off")
    names = {label: f"aio-{label}.outlast.test" for label in labels}
    for name in names.values():
        dns.set(name, ["127.0.0.1"], ttl=1)
    resolver = Resolver(providers=[dns.provider], min_ttl=0.2, max_ttl=0.2)
    fresh = {"force_close": True, "keepalive_timeout": None}  # a new connection per call
    counts = {label: [0, 0] for label in labels}
    start = time.monotonic()

    async def timeline() -> None:
        await asyncio.sleep(EMPTY_FROM)
        for name in names.values():
            dns.empty(name)
        await asyncio.sleep(EMPTY_UNTIL - EMPTY_FROM)
        for name in names.values():
            dns.set(name, ["127.0.0.1"], ttl=1)

    async def calls(label: str, client: Any) -> None:
        while time.monotonic() - start < REPLAY_SECONDS:
            counts[label][1] += 1
            try:
                await client.get_item(TableName=TABLE, Key={"pk": {"S": "k"}})
                counts[label][0] += 1
            except Exception:
                pass
            await asyncio.sleep(INTERVAL)

    async with (
        _aio_client(f"http://{names['outlast']}:{port}", **fresh) as mine,
        _aio_client(
            f"http://{names['aiohttp-cache-10s']}:{port}",
            resolver=_stub_resolver(dns),
            **fresh,
        ) as cached,
        _aio_client(
            f"http://{names['aiohttp-cache-off']}:{port}",
            resolver=_stub_resolver(dns),
            use_dns_cache=False,
            **fresh,
        ) as uncached,
    ):
        outlast.aws.wrap(mine, resolver=resolver)
        clients = {labels[0]: mine, labels[1]: cached, labels[2]: uncached}
        tasks = [asyncio.ensure_future(calls(label, c)) for label, c in clients.items()]
        await timeline()
        await asyncio.wait(tasks, timeout=max(0.0, REPLAY_SECONDS - (time.monotonic() - start)))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await resolver.aclose()
    return {label: (good, made) for label, (good, made) in counts.items()}


async def _aio_storm(dns: DNSServer) -> dict[str, tuple[float, float]]:
    """Requests and seconds per call against a server answering 500."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer500)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    resolver = Resolver(providers=[dns.provider])
    found: dict[str, tuple[float, float]] = {}
    try:
        async with _aio_client(url) as plain, _aio_client(url) as wrapped:
            outlast.aws.wrap(wrapped, resolver=resolver)
            for label, client in (("plain", plain), ("outlast", wrapped)):
                _Answer500.hits = 0
                start = time.monotonic()
                with contextlib.suppress(Exception):
                    await client.get_item(TableName=TABLE, Key={"pk": {"S": "k"}})
                found[label] = (float(_Answer500.hits), time.monotonic() - start)
    finally:
        server.shutdown()
        server.server_close()
        await resolver.aclose()
    return found


def _aiobotocore_rows(port: int, dns: DNSServer) -> None:
    try:
        import aiobotocore
    except ImportError:
        print("aiobotocore: not installed (pip install 'outlast[aiobotocore]'), rows skipped")
        return
    plain, wrapped = asyncio.run(_aio_latency(port, dns))
    print(
        f"aiobotocore {aiobotocore.__version__}: get_item, kept-alive, best of {ROUNDS} x {CALLS}:"
    )
    print(f"  plain aiobotocore       {plain * 1e3:8.3f} ms")
    print(f"  outlast.aws.wrap        {wrapped * 1e3:8.3f} ms")
    print(f"  ratio                   {wrapped / plain:8.3f}x")
    rates = asyncio.run(_aio_availability(port, dns))
    print(
        f"aiobotocore empty-record replay ({REPLAY_SECONDS:g} s, record empty for "
        f"{EMPTY_UNTIL - EMPTY_FROM:g} s, each client in its own task, new connection per call;"
        " a call still running at the end failed):"
    )
    for label, title in (
        ("outlast", "outlast resolver"),
        ("aiohttp-cache-10s", "stub + aiohttp DNS cache 10 s"),
        ("aiohttp-cache-off", "stub, aiohttp DNS cache off"),
    ):
        good, made = rates[label]
        print(f"  {title:30s} availability {good / max(made, 1):7.1%} ({good}/{made} calls)")
    storm = asyncio.run(_aio_storm(dns))
    print("aiobotocore against a server answering 500 (one get_item):")
    for label, (hits, seconds) in storm.items():
        print(f"  {label:8s} {hits:4.0f} requests  {seconds:6.2f} s")


def main() -> None:
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=_serve, args=(send,), daemon=True)
    server.start()
    try:
        port = receive.recv()
        with DNSServer() as dns:
            plain, wrapped = _latency(port, dns)
            print(f"get_item, kept-alive connection, best of {ROUNDS} rounds of {CALLS}:")
            print(f"  unwrapped boto3   {plain * 1e3:8.3f} ms")
            print(f"  outlast.aws.wrap  {wrapped * 1e3:8.3f} ms")
            print(f"  ratio             {wrapped / plain:8.3f}x   (target <= 1.05x)")
            mine, ttl_only, calls = _availability(port, dns)
            empty_for = EMPTY_UNTIL - EMPTY_FROM
            print(
                f"empty-record replay: {calls} calls over {REPLAY_SECONDS:g} s, "
                f"record empty for {empty_for:g} s, a new connection per call:"
            )
            print(f"  outlast resolver       availability {mine:7.1%}")
            print(f"  TTL-only resolution    availability {ttl_only:7.1%}")
            _aiobotocore_rows(port, dns)
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
