"""What ``import outlast`` and one more client cost, against httpx.

1. Import time: each module is imported in a fresh interpreter, best of 5, for
   ``httpx`` (what a user of outlast.Client had before), ``outlast`` and
   ``outlast.Client`` (touching the lazily loaded httpx faces), and ``outlast.aws``.
   Target: ``import outlast`` <= 2x ``import httpx``.
2. Which heavy optional modules ``import outlast`` loads (redis, opentelemetry,
   prometheus_client, boto3, botocore): none should be.
3. Per client: memory (tracemalloc) and threads for 200 ``httpx.Client()`` against
   200 ``outlast.Client()``, each made, used for one request to a loopback server by
   name (outlast) or address (httpx), and kept; then dropped.

Run: ``PYTHONPATH=src python benchmarks/imports.py`` (``--cpu``: CPU time instead of wall
time, for a busy machine).
"""

from __future__ import annotations

import gc
import http.server
import json
import os
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable

import httpx

ROUNDS = 5
CPU = "--cpu" in sys.argv
CLIENTS = 200
HEAVY = ("redis", "opentelemetry", "prometheus_client", "boto3", "botocore", "trio")


def import_time(statement: str) -> float:
    """Best wall time of ``statement`` in a fresh interpreter (seconds).

    With ``--cpu``: the best CPU time (user + system) the statement itself costs, which a
    busy machine disturbs far less than wall time.
    """
    clock = "time.process_time()" if CPU else "time.perf_counter()"
    code = f"import time; t = {clock}\n{statement}\nprint({clock} - t)"
    best = float("inf")
    for _ in range(ROUNDS):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        best = min(best, float(out.stdout.strip()))
    return best


def heavy_modules() -> list[str]:
    found = f"sorted(m for m in {HEAVY!r} if m in sys.modules)"
    code = f"import json, sys, outlast\nprint(json.dumps({found}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


class _Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def _outlast_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("outlast-dns"))


def per_client(make: Callable[[], httpx.Client], url: str) -> tuple[float, int]:
    """KiB allocated per client kept, and outlast threads added, for CLIENTS clients."""
    gc.collect()
    threads = _outlast_threads()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    clients = []
    for _ in range(CLIENTS):
        client = make()
        client.get(url)
        clients.append(client)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    added = _outlast_threads() - threads
    for client in clients:
        client.close()
    return grown / CLIENTS / 1024, added


def main() -> None:
    httpx_s = import_time("import httpx")
    outlast_s = import_time("import outlast")
    client_s = import_time("import outlast; outlast.Client(trust_env=False)")
    httpx_client_s = import_time("import httpx; httpx.Client(trust_env=False)")
    aws_s = import_time("import outlast.aws")
    print(f"import httpx                        {httpx_s * 1000:7.1f} ms")
    print(
        f"import outlast                      {outlast_s * 1000:7.1f} ms  "
        f"{outlast_s / httpx_s:.2f}x httpx (target <= 2x)"
    )
    print(f"import httpx; httpx.Client()        {httpx_client_s * 1000:7.1f} ms")
    print(
        f"import outlast; outlast.Client()    {client_s * 1000:7.1f} ms  "
        f"{client_s / httpx_client_s:.2f}x httpx's"
    )
    print(
        f"import outlast.aws                  {aws_s * 1000:7.1f} ms  {aws_s / httpx_s:.2f}x httpx"
    )
    print(f"heavy modules imported by outlast:  {heavy_modules() or 'none'}")

    from outlast import Client
    from outlast.testing import DNSServer

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    with DNSServer() as dns:
        dns.set("bench.outlast.test", ["127.0.0.1"])
        os.environ["OUTLAST_DNS_PROVIDERS"] = dns.provider
        plain_kib, plain_threads = per_client(httpx.Client, f"http://127.0.0.1:{port}/")
        ours_kib, ours_threads = per_client(Client, f"http://bench.outlast.test:{port}/")
    server.shutdown()
    print(f"per client kept ({CLIENTS} clients, one request each):")
    print(f"  httpx.Client    {plain_kib:7.1f} KiB, {plain_threads} outlast threads added")
    print(
        f"  outlast.Client  {ours_kib:7.1f} KiB, {ours_threads} outlast threads added "
        f"({ours_kib / plain_kib:.2f}x httpx's memory)"
    )


if __name__ == "__main__":
    main()
