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

Run: ``PYTHONPATH=src python benchmarks/aws.py``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
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
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
