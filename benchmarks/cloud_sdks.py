"""azure-storage-blob and google-cloud-storage on outlast.requests, against their emulators.

Azurite (``.ci/node_modules/.bin/azurite-blob``, or ``OUTLAST_AZURITE``) and
gcp-storage-emulator run as subprocesses on loopback. For each SDK, in the same run:

1. Latency: alternating rounds of a small download over a kept-alive connection, the
   SDK on a plain ``requests.Session`` given the IP against the SDK on outlast
   (``RequestsTransport(session=outlast.requests.Session())`` for Azure,
   ``outlast.requests.mount(client._http)`` for Google) resolving a name served by a
   DNS server on loopback. Per-call time of the best round; target <= 1.05x.
2. Availability through the empty-record replay, in a network namespace whose
   ``/etc/resolv.conf`` names a DNS server on loopback (tests/netns.py,
   tests/system_replay.py; needs root and ``unshare``), the emulators started inside
   it: the record (TTL 2 s) is good for 2 s, empty for 10 s, good again for 2 s; a
   download every 100 ms on a new connection; a call that succeeds within 2 s counts.
   The plain side is the SDK on its own ``requests.Session``, resolving through the
   system resolver (glibc's ``getaddrinfo``), with its own retries off
   (``retry_total=0`` / ``retry=None``): with them on, each call in the outage hangs
   for minutes (see 3), which a 100 ms replay cannot wait for. The outlast side is the
   documented recipe (SDK retries off too), with ``OUTLAST_DNS_PROVIDERS`` naming the
   same nameserver.
3. One download once the record has been empty 11 s (each client made one while it was
   good), all at once: the plain SDK as shipped (its own retries on), the plain SDK with
   its retries off, and the SDK on outlast. How long each took and what it raised; the
   SDKs' own retries make this the longest part (about two minutes).

About 2.5 minutes in all. Run: ``PYTHONPATH=src python benchmarks/cloud_sdks.py``.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from _replay import EMPTY, INTERVAL, WITHIN, netns, replay
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

import outlast.requests
from outlast import Resolver
from outlast.testing import DNSServer

ROUNDS = 15
CALLS = 40
LATE_LIMIT = 150.0
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_HERE = os.path.dirname(os.path.abspath(__file__))


@contextmanager
def _azurite() -> Iterator[int]:
    executable = os.environ.get("OUTLAST_AZURITE") or os.path.join(
        _HERE, "..", ".ci", "node_modules", ".bin", "azurite-blob"
    )
    with tempfile.TemporaryDirectory() as location:
        process = subprocess.Popen(
            [
                *(executable, "--blobHost", "127.0.0.1", "--blobPort", "0"),
                *("--location", location, "--disableTelemetry", "--disableProductStyleUrl"),
                *("--loose", "--skipApiVersionCheck", "--silent"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            assert process.stdout is not None
            for _ in range(50):
                match = re.search(
                    r"listens on http://127\.0\.0\.1:(\d+)", process.stdout.readline()
                )
                if match:
                    break
            else:
                raise RuntimeError("Azurite did not start")
            yield int(match.group(1))
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def _gcs_emulator() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"),
            *("--port", str(port), "--in-memory", "--quiet"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _azure(url: str, session: requests.Session) -> Any:
    client = BlobServiceClient(
        account_url=url,
        credential={"account_name": ACCOUNT, "account_key": KEY},
        transport=RequestsTransport(session=session, session_owner=False),
        retry_total=0,
    )
    container = client.get_container_client("bench")
    return lambda: container.download_blob("k").readall()


def _google(url: str, session: requests.Session | None) -> tuple[Any, Any]:
    client = storage.Client(
        project="bench",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
        _http=session,
    )
    blob = client.bucket("bench").blob("k")
    return client, lambda: blob.download_as_bytes(retry=None)


def _best(calls: dict[str, Callable[[], Any]]) -> dict[str, float]:
    times: dict[str, list[float]] = {label: [] for label in calls}
    for call in calls.values():
        call()  # warm
    for _ in range(ROUNDS):
        for label, call in calls.items():
            start = time.perf_counter()
            for _ in range(CALLS):
                call()
            times[label].append((time.perf_counter() - start) / CALLS)
    return {label: min(values) for label, values in times.items()}


def _row(label: str, outcomes: list[float | None]) -> str:
    good = sorted(t for t in outcomes if t is not None)
    share = len(good) / len(outcomes)
    times = "no successful call"
    if len(good) >= 2:
        cuts = statistics.quantiles(good, n=100)
        times = f"p50 {cuts[49] * 1e3:6.1f} ms  p99 {cuts[98] * 1e3:6.1f} ms"
    return f"  {label:<52} availability {share:7.1%}   {times}"


_LATE_LABELS = {
    "plain": "the SDK as shipped, system resolver",
    "plain, SDK retries off": "the SDK, system resolver, its retries off",
    "outlast": "the SDK on outlast.requests",
}


def _print(
    sdk: str,
    best: dict[str, float],
    results: dict[str, list[float | None]] | None,
    late: dict[str, list[Any]] | None,
) -> None:
    plain, ours = best["plain"], best["outlast"]
    print(f"{sdk}: download, kept-alive connection, best of {ROUNDS} rounds of {CALLS}:")
    print(f"  the SDK's own session    {plain * 1e3:8.3f} ms")
    print(f"  on outlast.requests      {ours * 1e3:8.3f} ms")
    print(f"  ratio                    {ours / plain:8.3f}x   (target <= 1.05x)")
    if results is None or late is None:
        return
    print(
        f"  empty-record replay, system resolver in a network namespace (TTL 2 s, empty "
        f"{EMPTY:g} s, a call every {INTERVAL * 1e3:.0f} ms on a new connection, success "
        f"within {WITHIN:g} s; {len(results['plain'])} calls each):"
    )
    print(_row("the SDK, system resolver, its retries off", results["plain"]))
    print(_row("the SDK on outlast.requests", results["outlast"]))
    print("  one download once the record has been empty 11 s:")
    for side, (took, error) in late.items():
        label = _LATE_LABELS.get(side, side)
        if took is None:
            print(f"    {label:<42} still running after {LATE_LIMIT:g} s")
        else:
            raised = f"then {error.partition(': ')[0]}" if error else "succeeded"
            print(f"    {label:<42} {took:9.3f} s, {raised}")


def azure(dns: DNSServer) -> dict[str, float]:
    with _azurite() as port:
        dns.set("azure-bench.outlast.test", ["127.0.0.1"], ttl=300)
        resolver = Resolver(providers=[dns.provider])
        setup = _azure(f"http://127.0.0.1:{port}/{ACCOUNT}", requests.Session())
        client = BlobServiceClient(
            account_url=f"http://127.0.0.1:{port}/{ACCOUNT}",
            credential={"account_name": ACCOUNT, "account_key": KEY},
        )
        client.create_container("bench").upload_blob("k", b"x" * 1024)
        best = _best(
            {
                "plain": setup,
                "outlast": _azure(
                    f"http://azure-bench.outlast.test:{port}/{ACCOUNT}",
                    outlast.requests.Session(resolver=resolver),
                ),
            }
        )
        resolver.close()
        return best


def google(dns: DNSServer) -> dict[str, float]:
    with _gcs_emulator() as port:
        dns.set("gcs-bench.outlast.test", ["127.0.0.1"], ttl=300)
        resolver = Resolver(providers=[dns.provider])
        admin, _ = _google(f"http://127.0.0.1:{port}", None)
        admin.create_bucket("bench").blob("k").upload_from_string(b"x" * 1024)
        _, plain_call = _google(f"http://127.0.0.1:{port}", None)
        our_client, our_call = _google(f"http://gcs-bench.outlast.test:{port}", None)
        outlast.requests.mount(our_client._http, resolver=resolver)
        best = _best({"plain": plain_call, "outlast": our_call})
        resolver.close()
        return best


def main() -> None:
    with DNSServer() as dns:
        best = {"azure": azure(dns), "google": google(dns)}
    reason = netns.unavailable()
    replays: dict[str, dict[str, list[float | None]] | None] = dict.fromkeys(best)
    late: dict[str, Any] = dict.fromkeys(best)
    if reason is None:
        replays = {client: replay(client) for client in best}
        late = netns.run(
            "system_replay:after_empty",
            timeout=LATE_LIMIT + 90,
            clients=list(best),
            limit=LATE_LIMIT,
        )
    _print("azure-storage-blob", best["azure"], replays["azure"], late["azure"])
    _print("google-cloud-storage", best["google"], replays["google"], late["google"])
    if reason is not None:
        print(f"empty-record replay on the system resolver skipped: {reason}")


if __name__ == "__main__":
    main()
