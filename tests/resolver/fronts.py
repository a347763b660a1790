"""DoT and DoH fronts for the fault server: TLS and HTTPS in front, its faults behind.

Each query that arrives is forwarded over TCP to a :class:`DNSServer`, so the faults set
there (per name and per record type) reach ``tls://`` and ``https://`` providers too:
a dropped query is never answered, a malformed answer is passed on as it is. The
certificate is issued by a trustme CA for 127.0.0.1; ``ca_file`` is the trust to use.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import struct
import threading
from pathlib import Path
from types import TracebackType

import trustme

from outlast.testing import DNSServer

_BACKEND_TIMEOUT = 5.0


def _ask(backend: DNSServer, wire: bytes) -> bytes | None:
    """The backend's reply over TCP, or None if it gave none (a dropped query)."""
    try:
        with socket.create_connection(
            (backend.address, backend.port), timeout=_BACKEND_TIMEOUT
        ) as sock:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            head = _read(sock, 2)
            return _read(sock, struct.unpack("!H", head)[0])
    except (OSError, ValueError):
        return None


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("closed")
        data += chunk
    return data


class Front:
    """A DoT listener and a DoH (HTTP/1.1) listener on 127.0.0.1 in front of ``backend``."""

    def __init__(self, backend: DNSServer, directory: Path) -> None:
        self.backend = backend
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1")
        self.ca_file = str(directory / "front-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(self._context)
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self._dot = socket.create_server(("127.0.0.1", 0))
        self._dot.settimeout(0.1)
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                reply = _ask(front.backend, body)
                if reply is None:
                    self.close_connection = True
                    return  # no answer: the client times out
                self.send_response(200)
                self.send_header("content-type", "application/dns-message")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self._doh = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._doh.daemon_threads = True
        context = self._context

        def get_request() -> tuple[socket.socket, object]:
            sock, addr = socket.socket.accept(self._doh.socket)
            return context.wrap_socket(sock, server_side=True), addr

        self._doh.get_request = get_request  # type: ignore[method-assign]

    @property
    def tls_provider(self) -> str:
        return f"tls://127.0.0.1:{self._dot.getsockname()[1]}"

    @property
    def doh_provider(self) -> str:
        return f"https://127.0.0.1:{self._doh.server_address[1]}/dns-query"

    def __enter__(self) -> Front:
        for target in (self._serve_dot, self._doh.serve_forever):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed.set()
        self._doh.shutdown()
        self._doh.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._dot.close()

    def _serve_dot(self) -> None:
        while not self._closed.is_set():
            try:
                raw, _ = self._dot.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._dot_connection, args=(raw,), daemon=True).start()

    def _dot_connection(self, raw: socket.socket) -> None:
        lock = threading.Lock()
        try:
            raw.settimeout(5)
            conn = self._context.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return

        def answer(wire: bytes) -> None:
            reply = _ask(self.backend, wire)
            if reply is not None:
                with lock, contextlib.suppress(OSError):
                    conn.sendall(struct.pack("!H", len(reply)) + reply)

        with conn:
            workers = []
            try:
                while not self._closed.is_set():
                    head = _read(conn, 2)
                    wire = _read(conn, struct.unpack("!H", head)[0])
                    worker = threading.Thread(target=answer, args=(wire,), daemon=True)
                    worker.start()
                    workers.append(worker)
            except (OSError, ValueError):
                pass
            for worker in workers:
                worker.join(timeout=_BACKEND_TIMEOUT + 1)
