"""Helpers for the outlast.aws tests: plain boto3 clients, a refused port."""

from __future__ import annotations

import http.server
import socket
import threading
from typing import Any

import boto3
from botocore.config import Config


def raw_client(
    service: str,
    endpoint_url: str,
    *,
    region: str = "us-east-1",
    verify: bool | str | None = None,
    **config: Any,
) -> Any:
    """A plain boto3 client for ``endpoint_url`` (path-style S3, short timeouts)."""
    options: dict[str, Any] = {"connect_timeout": 2, "read_timeout": 10}
    options.update(config)
    return boto3.session.Session().client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        verify=verify,
        config=Config(s3={"addressing_style": "path"}, **options),
    )


def refused_port() -> int:
    """A loopback port nothing listens on (connects to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CountingServer:
    """An HTTP server on 127.0.0.1 answering every request with one canned response.

    ``hits`` counts the requests it received.
    """

    def __init__(self, status: int, body: bytes = b"{}", headers: dict[str, str] | None = None):
        self.hits = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                with outer._lock:
                    outer.hits += 1
                self.send_response(status)
                self.send_header("content-type", "application/x-amz-json-1.0")
                self.send_header("content-length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST
            do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CountingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class DroppingServer:
    """A TCP server on 127.0.0.1 that reads each request whole, then closes without answering.

    ``received`` holds the size of each request body it read.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self._drain(conn)

    def _drain(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (
                    line.decode("latin-1").partition(":") for line in head.split(b"\r\n")[1:]
                )
            }
            if headers.get("expect", "").lower() == "100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            length = int(headers.get("content-length") or 0)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            self.received.append(len(body))
        except OSError:
            return

    def __enter__(self) -> DroppingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
