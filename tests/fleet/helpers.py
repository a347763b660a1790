"""Helpers for the fleet tests: a counting HTTP backend, bounded waits, builders."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx

import outlast
from outlast.fleet import Fleet
from outlast.http._classify import classify_error, classify_result

SRC = str(Path(__file__).resolve().parents[2] / "src")


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 10 ms until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


class Backend:
    """A tiny HTTP/1.1 server on 127.0.0.1 that counts hits and answers ``status``."""

    def __init__(self) -> None:
        self.status = 200
        self.hits = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with owner._lock:
                    owner.hits += 1
                    status = owner.status
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def http_policy(fleet: Fleet | None, *, failures: int = 3, reset: float = 30.0) -> outlast.Policy:
    """The transports' policy (HTTP classifiers, one breaker per origin), no retries.

    Its breaker stays open for the whole ``reset`` (``min_reset=reset``) and refuses at
    once (``max_wait=0``): these tests are about what the fleet shares, and a first
    opening of 0.05 s, or a caller waiting out the last 0.25 s of an interval, would
    let a probe through between two requests on a busy machine.
    """
    return outlast.Policy(
        retry=None,
        breaker=outlast.CircuitBreaker(failures=failures, reset=reset, min_reset=reset, max_wait=0),
        classify_error=classify_error,
        classify_result=classify_result,
        name="outlast.http",
        shared=fleet,
    )


def client(
    policy: outlast.Policy, resolver: outlast.Resolver | None = None, *, keepalive: bool = True
) -> httpx.Client:
    """An httpx client on an outlast transport; without keep-alive every request resolves."""
    limits = httpx.Limits(max_keepalive_connections=None if keepalive else 0)
    transport = outlast.Transport(policy=policy, resolver=resolver, limits=limits)
    return httpx.Client(transport=transport, timeout=2.0)


def subprocess_env(redis_url: str, extra: Iterable[tuple[str, str]] = ()) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTLAST_")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OUTLAST_REDIS_URL"] = redis_url
    env.update(extra)
    return env
