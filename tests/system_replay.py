"""The empty-record replay of issue 17, plain clients on the system resolver, outlast beside.

Run inside a network namespace by `netns.run` (see netns.py): the DNS server there is
the system's nameserver, so a plain client (``requests.get``, ``aiohttp.ClientSession``,
azure-storage-blob, google-cloud-storage, all as shipped) resolves through glibc's
``getaddrinfo`` as in production. The outlast client beside it is the documented
two-line change, with ``OUTLAST_DNS_PROVIDERS=udp://127.0.0.1:53`` (the same
nameserver, asked directly, so record TTLs are honoured and outlast re-asks during the
outage). Each client kind talks to its own server in the namespace: a small HTTP/1.1
server (requests, aiohttp), Azurite, gcp-storage-emulator.

Two scenarios, each a function for ``netns.run("system_replay:...")``:

- `replay`: the record (TTL *ttl*) is good for *good* s, empty for *empty* s, good
  again for *after* s; every *interval* s each side makes one call on a new
  connection. Returns each call's start, duration and error, the phase times, and how
  many queries each side's name got while the record was empty.
- `after_empty`: each side makes one call while the record is good, the record goes
  empty, and *empty_for* s later each side makes one more call (all at once, each in
  its own thread, given at most *limit* s). The plain Azure and Google clients are
  measured as shipped (their own retries on) and with them off.

Every loop here is bounded by the scenario's length.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

NAMESERVER_PROVIDER = "udp://127.0.0.1:53"
CLIENTS = ("requests", "aiohttp", "azure", "google")
ACCOUNT = "devstoreaccount1"  # Azurite's development account (public)
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BODY = b"x" * 1024
_ROOT = Path(__file__).resolve().parents[1]
_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 1024\r\ncontent-type: text/plain\r\n\r\n" + BODY
_SERVER = f"""
import asyncio, sys
RESPONSE = {_RESPONSE!r}
async def handle(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def _prepare_environment() -> None:
    # Defaults everywhere (no OUTLAST_* the caller's environment had), but the outlast
    # side's providers: the namespace's nameserver, asked directly.
    for variable in [v for v in os.environ if v.startswith("OUTLAST_")]:
        del os.environ[variable]
    os.environ["OUTLAST_DNS_PROVIDERS"] = NAMESERVER_PROVIDER
    # google-cloud-storage's own background bucket reads (docs/google-cloud.md): off.
    os.environ["DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"] = "true"


# -- the servers, started inside the namespace -------------------------------------------


@contextlib.contextmanager
def _process(argv: list[str], port_from: Callable[[subprocess.Popen[str]], int]) -> Iterator[int]:
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield port_from(process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


def _first_line_port(process: subprocess.Popen[str]) -> int:
    assert process.stdout is not None
    return int(process.stdout.readline())


def _azurite_port(process: subprocess.Popen[str]) -> int:
    assert process.stdout is not None
    for _ in range(50):  # bounded: a few lines before it listens
        line = process.stdout.readline()
        match = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
        if match:
            return int(match.group(1))
        if not line:
            break
    raise RuntimeError("Azurite did not start listening")


def azurite_executable() -> str:
    """``AZURITE_BIN``, or the one ``.ci/run`` installs into ``.ci/node_modules``."""
    return os.environ.get("AZURITE_BIN") or str(
        _ROOT / ".ci" / "node_modules" / ".bin" / "azurite-blob"
    )


@contextlib.contextmanager
def _backend(client: str, tmp: Path) -> Iterator[int]:
    """The server *client* talks to, on 127.0.0.1 in the namespace, seeded; its port."""
    if client in ("requests", "aiohttp"):
        with _process([sys.executable, "-c", _SERVER], _first_line_port) as port:
            yield port
    elif client == "azure":
        executable = azurite_executable()
        if not os.path.exists(executable):
            raise RuntimeError(f"Azurite is not installed at {executable}: run .ci/run's npm step")
        location = tmp / "azurite"
        argv = [
            *(executable, "--blobHost", "127.0.0.1", "--blobPort", "0"),
            *("--location", str(location), "--disableTelemetry", "--disableProductStyleUrl"),
            *("--loose", "--skipApiVersionCheck"),
        ]
        with _process(argv, _azurite_port) as port:
            from azure.storage.blob import BlobServiceClient

            admin = BlobServiceClient(
                f"http://127.0.0.1:{port}/{ACCOUNT}",
                credential={"account_name": ACCOUNT, "account_key": KEY},
            )
            with admin:
                admin.create_container("replay").upload_blob("k", BODY)
            yield port
        shutil.rmtree(location, ignore_errors=True)
    elif client == "google":
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        argv = [
            *(sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"),
            *("--port", str(port), "--in-memory", "--quiet"),
        ]
        with _process(argv, lambda process: port):
            deadline = time.monotonic() + 20
            while True:  # bounded by the deadline
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the Cloud Storage emulator did not start") from None
                    time.sleep(0.1)
            admin, _ = _google_call(f"http://127.0.0.1:{port}", retries=False)
            admin.create_bucket("replay").blob("k").upload_from_string(BODY, retry=None)
            admin.close()
            yield port
    else:
        raise ValueError(f"client must be one of {CLIENTS}, not {client!r}")


# -- the clients: each call is on a new connection ---------------------------------------


class _Loop:
    """An asyncio loop on a daemon thread, so aiohttp calls can be made from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()


def _close_idle(session: Any) -> None:
    for adapter in session.adapters.values():
        adapter.close()  # drop kept-alive connections: the next call dials, so resolves


def _google_call(url: str, *, retries: bool) -> tuple[Any, Callable[[], Any]]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="replay",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": url},
    )
    blob = client.bucket("replay").blob("k")
    if retries:
        return client, blob.download_as_bytes
    return client, lambda: blob.download_as_bytes(retry=None)


def make_call(
    client: str,
    side: str,
    host: str,
    port: int,
    *,
    sdk_retries: bool = False,
    session_per_call: bool = False,
    loop: _Loop | None = None,
) -> Callable[[], None]:
    """One call of *client* (``plain`` or ``outlast`` *side*) to ``host:port``, raising on
    failure. Plain clients are as shipped; *sdk_retries* leaves the Azure and Google
    SDKs' own retries on (off otherwise, as the outlast recipes have them);
    *session_per_call* gives the plain aiohttp side a new session (so no DNS cache) per
    call, instead of one session with aiohttp's 10 s DNS cache in front of the resolver.
    """
    import requests

    import outlast.requests

    if client == "requests":
        url = f"http://{host}:{port}/"
        if side == "plain":
            return lambda: requests.get(url, timeout=2).raise_for_status()
        session = outlast.requests.Session()

        def ours() -> None:
            _close_idle(session)
            session.get(url, timeout=2).raise_for_status()

        return ours
    if client == "aiohttp":
        import aiohttp

        import outlast.aiohttp

        assert loop is not None
        url = f"http://{host}:{port}/"
        timeout = aiohttp.ClientTimeout(total=2)

        async def fetch(session: aiohttp.ClientSession) -> None:
            async with session.get(url, timeout=timeout) as response:
                response.raise_for_status()
                await response.read()

        async def fresh() -> None:
            async with aiohttp.ClientSession() as session:
                await fetch(session)

        async def build() -> aiohttp.ClientSession:
            if side == "plain":  # aiohttp's defaults, with a new connection per call
                return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
            return outlast.aiohttp.ClientSession(connector_options={"force_close": True})

        if side == "plain" and session_per_call:
            return lambda: loop.run(fresh())
        kept = loop.run(build())
        return lambda: loop.run(fetch(kept))
    if client == "azure":
        from azure.core.pipeline.transport import RequestsTransport
        from azure.storage.blob import BlobServiceClient

        session = requests.Session() if side == "plain" else outlast.requests.Session()
        options: dict[str, Any] = {} if sdk_retries else {"retry_total": 0}
        # A plain RequestsTransport builds this same requests.Session; given here so that
        # its kept-alive connections can be dropped before each call.
        service = BlobServiceClient(
            f"http://{host}:{port}/{ACCOUNT}",
            credential={"account_name": ACCOUNT, "account_key": KEY},
            transport=RequestsTransport(session=session, session_owner=False),
            **options,
        )
        container = service.get_container_client("replay")

        def azure() -> None:
            _close_idle(session)
            container.download_blob("k").readall()

        return azure
    if client == "google":
        google, download = _google_call(f"http://{host}:{port}", retries=sdk_retries)
        if side == "outlast":
            outlast.requests.mount(google._http)

        def gcs() -> None:
            _close_idle(google._http)
            download()

        return gcs
    raise ValueError(f"client must be one of {CLIENTS}, not {client!r}")


def _outcome(call: Callable[[], None]) -> tuple[float, str | None]:
    began = time.perf_counter()
    try:
        call()
    except Exception as exc:
        return time.perf_counter() - began, _describe(exc)
    return time.perf_counter() - began, None


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {text[:160]}"


# -- the scenarios (run inside the namespace) -------------------------------------------


def replay(
    ns: Any,
    *,
    client: str,
    ttl: int = 2,
    good: float = 2.0,
    empty: float = 10.0,
    after: float = 2.0,
    interval: float = 0.1,
    session_per_call: bool = False,
) -> dict[str, Any]:
    """The empty-record replay for one client kind, plain and outlast side by side.

    Returns ``{"emptied": s, "restored": s, "calls": {side: [[start, took, error]]},
    "queries_while_empty": {side: n}, "resolved_before": {side: [addresses]}}`` with
    times in seconds from the replay's start.
    """
    _prepare_environment()
    names = {side: f"{client}-{side}.replay.outlast.test" for side in ("plain", "outlast")}
    loop = _Loop() if client == "aiohttp" else None
    with _backend(client, ns.tmp) as port:
        for name in names.values():
            ns.dns.set(name, ["127.0.0.1"], ttl=ttl)
        resolved = {
            side: sorted({i[4][0] for i in socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)})
            for side, name in names.items()
        }
        calls = {
            side: make_call(client, side, name, port, session_per_call=session_per_call, loop=loop)
            for side, name in names.items()
        }
        outcomes: dict[str, list[tuple[float, float, str | None]]] = {side: [] for side in names}
        queries = dict.fromkeys(names, 0)
        emptied_at = restored_at = 0.0
        start = time.monotonic()
        tick = 0
        while (elapsed := time.monotonic() - start) < good + empty + after:
            if not emptied_at and elapsed >= good:
                for side, name in names.items():
                    queries[side] = -ns.dns.queries_for(name)
                    ns.dns.empty(name)
                emptied_at = time.monotonic() - start
            if not restored_at and elapsed >= good + empty:
                for side, name in names.items():
                    ns.dns.set(name, ["127.0.0.1"], ttl=ttl)
                    queries[side] += ns.dns.queries_for(name)
                restored_at = time.monotonic() - start
            for side, call in calls.items():
                began = time.monotonic() - start
                took, error = _outcome(call)
                outcomes[side].append((began, took, error))
            tick += 1
            time.sleep(max(0.0, start + tick * interval - time.monotonic()))
    return {
        "emptied": emptied_at,
        "restored": restored_at,
        "calls": outcomes,
        "queries_while_empty": queries,
        "resolved_before": resolved,
    }


def after_empty(
    ns: Any, *, clients: list[str], ttl: int = 2, empty_for: float = 11.0, limit: float = 150.0
) -> dict[str, Any]:
    """One call per client and side once the record has been empty *empty_for* seconds.

    Returns ``{client: {side: [took or None, error or None]}}``: None for a call still
    running after *limit* s. Sides: ``plain`` (as shipped), ``plain, SDK retries off``
    (Azure and Google only) and ``outlast``.
    """
    _prepare_environment()
    loop = _Loop() if "aiohttp" in clients else None
    with contextlib.ExitStack() as stack:
        sides: dict[tuple[str, str], tuple[str, Callable[[], None]]] = {}
        for client in clients:
            port = stack.enter_context(_backend(client, ns.tmp / client))
            variants = [("plain", "plain", True), ("outlast", "outlast", False)]
            if client in ("azure", "google"):
                variants.insert(1, ("plain, SDK retries off", "plain", False))
            for label, side, retries in variants:
                name = f"{client}-{len(sides)}.after.outlast.test"
                ns.dns.set(name, ["127.0.0.1"], ttl=ttl)
                call = make_call(client, side, name, port, sdk_retries=retries, loop=loop)
                call()  # while the record is good: warm, and outlast learns the address
                sides[client, label] = (name, call)
        for name, _ in sides.values():
            ns.dns.empty(name)
        time.sleep(empty_for)
        results: dict[tuple[str, str], tuple[float, str | None]] = {}

        def measure(key: tuple[str, str], call: Callable[[], None]) -> None:
            results[key] = _outcome(call)

        threads = [
            threading.Thread(target=measure, args=(key, call), daemon=True)
            for key, (_, call) in sides.items()
        ]
        began = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, began + limit - time.monotonic()))
        report: dict[str, dict[str, list[Any]]] = {client: {} for client in clients}
        for client, label in sides:
            took, error = results.get((client, label), (None, None))
            report[client][label] = [took, error]
        return report


# -- what the tests hold every replay to (run in the test process) -----------------------


def check_replay(result: dict[str, Any], plain_error: str) -> None:
    """Assert the headline of issue 17 on a `replay` result.

    The plain client resolved through the namespace's nameserver (the only place its
    name exists), worked while the record was good, failed with *plain_error* (a text in
    the error) on every call while it was empty, and worked again once it was back; the
    outlast client answered every call within 2 s, and kept asking the nameserver
    during the outage (its last-known-good addresses outlived the empty answers: they
    were not merely cached past the outage).
    """
    assert result["resolved_before"] == {"plain": ["127.0.0.1"], "outlast": ["127.0.0.1"]}
    emptied, restored = result["emptied"], result["restored"]
    plain, ours = result["calls"]["plain"], result["calls"]["outlast"]
    before = [error for began, _, error in plain if began < emptied]
    during = [error for began, _, error in plain if emptied <= began < restored]
    back = [error for began, _, error in plain if began >= restored]
    # About 10, 20 and 10 calls; fewer when a loaded machine slows the calls down.
    assert len(before) >= 3, result
    assert len(during) >= 5, result
    assert len(back) >= 3, result
    assert before == [None] * len(before), before
    assert all(error is not None and plain_error in error for error in during), during
    assert back == [None] * len(back), back
    assert result["queries_while_empty"]["plain"] >= len(during)  # one query or more a call
    failed = [(began, took, error) for began, took, error in ours if error or took > 2.0]
    assert len(ours) >= 10, result
    assert not failed, failed
    assert result["queries_while_empty"]["outlast"] >= 1
