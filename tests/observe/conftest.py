"""Fixtures for the exporter tests: a DNS server that never answers, a loopback HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from outlast.testing import DNSServer


@pytest.fixture
def blackhole() -> Iterator[DNSServer]:
    """A started `DNSServer` that drops every query."""
    with DNSServer() as server:
        server.fail("drop")
        yield server


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(int(self.path.strip("/") or 200))  # GET /503 answers 503
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    """A threaded HTTP server on 127.0.0.1: ``GET /`` is 200, ``GET /503`` is 503."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
