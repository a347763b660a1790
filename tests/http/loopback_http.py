"""A real HTTP/1.1 and HTTP/2 server on loopback for the transport tests, and a tiny proxy.

`Backend` listens on 127.0.0.1 (any loopback address) at a free port, in threads.
With a certificate it speaks TLS, offers ALPN ``h2`` and ``http/1.1``, and records the
SNI name each handshake carried. Every request is counted; what it answers is
scripted: a fixed status, a queue of statuses to answer first, a ``Retry-After``, or
``"drop"`` (read the request, close the connection without answering) or ``"stall"``
(read the request, answer nothing for a while: the client's read times out).

`ForwardProxy` answers absolute-form requests (``GET http://host/ HTTP/1.1``) itself
and records the targets, so a test can see that traffic went through it.
`ConnectProxy` tunnels ``CONNECT host:port`` to a loopback address at that port (it
never resolves the name), or refuses the tunnel with a scripted status.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeVar

import h2.config
import h2.connection
import h2.events
import trustme

__all__ = ["DROP", "STALL", "Backend", "ConnectProxy", "ForwardProxy", "silent_address"]

DROP = "drop"
STALL = "stall"
STALL_FOR = 3.0


_L = TypeVar("_L", bound="_Listener")


class _Listener:
    """A TCP listener on loopback, accepting in a thread; what a connection gets is the
    subclass's :meth:`_accepted`. Sockets passed to :meth:`_track` are shut down at close.
    """

    def __init__(self, address: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._sock = socket.create_server((address, port))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __enter__(self: _L) -> _L:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(5)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.add(sock)

    def _in_thread(self, target: Callable[[socket.socket], None], conn: socket.socket) -> None:
        thread = threading.Thread(target=target, args=(conn,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._accepted(conn)

    def _accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError


class Backend(_Listener):
    """A scripted HTTP server; use as a context manager."""

    def __init__(
        self,
        *,
        cert: trustme.LeafCert | None = None,
        address: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.status: int = 200
        self.retry_after: str | None = None
        self.script: deque[int | str] = deque()
        self.hits = 0
        self.connections = 0
        self.sni: list[str | None] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._ctx: ssl.SSLContext | None = None
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            cert.configure_cert(ctx)
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            ctx.sni_callback = self._on_sni
            self._ctx = ctx
        super().__init__(address, port)

    # -- control ---------------------------------------------------------------------

    def _on_sni(self, sslobj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        with self._lock:
            self.sni.append(name)

    def _next(self) -> int | str:
        with self._lock:
            self.hits += 1
            if self.script:
                return self.script.popleft()
            return self.status

    # -- serving ---------------------------------------------------------------------

    def _accepted(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        self._track(conn)
        self._in_thread(self._connection, conn)

    def _connection(self, raw: socket.socket) -> None:
        conn: socket.socket = raw
        try:
            raw.settimeout(5)
            if self._ctx is not None:
                conn = self._ctx.wrap_socket(raw, server_side=True)
                if isinstance(conn, ssl.SSLSocket) and conn.selected_alpn_protocol() == "h2":
                    self._h2(conn)
                    return
            self._http1(conn)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            with self._lock:
                self._socks.discard(raw)
            with contextlib.suppress(OSError):
                conn.close()

    def _http1(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                line = reader.readline(65536)
                if not line:
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = reader.readline(65536)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                length = int(headers.get("content-length", "0"))
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    while True:
                        size = int(reader.readline().split(b";")[0], 16)
                        reader.read(size + 2)
                        if size == 0:
                            break
                elif length:
                    reader.read(length)
                with self._lock:
                    self.requests.append((method, target, headers))
                answer = self._next()
                if answer == DROP:
                    return
                if answer == STALL:
                    self._stop.wait(STALL_FOR)
                    return
                body = f"{method} {target}".encode()
                extra = ""
                if self.retry_after is not None and answer in (429, 503):
                    extra = f"retry-after: {self.retry_after}\r\n"
                head = (
                    f"HTTP/1.1 {answer} X\r\ncontent-length: {len(body)}\r\n{extra}"
                    "content-type: text/plain\r\n\r\n"
                )
                conn.sendall(head.encode() + body)
        finally:
            reader.close()

    def _h2(self, conn: ssl.SSLSocket) -> None:
        h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2c.initiate_connection()
        conn.sendall(h2c.data_to_send())
        pending: dict[int, dict[str, str]] = {}
        while not self._stop.is_set():
            data = conn.recv(65536)
            if not data:
                return
            for event in h2c.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    pending[event.stream_id] = {
                        (k.decode() if isinstance(k, bytes) else k): (
                            v.decode() if isinstance(v, bytes) else v
                        )
                        for k, v in event.headers
                    }
                elif isinstance(event, h2.events.DataReceived):
                    h2c.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    headers = pending.pop(event.stream_id, {})
                    self._h2_answer(h2c, event.stream_id, headers)
            conn.sendall(h2c.data_to_send())

    def _h2_answer(
        self, h2c: h2.connection.H2Connection, stream_id: int, headers: dict[str, str]
    ) -> None:
        method, path = headers.get(":method", "?"), headers.get(":path", "?")
        with self._lock:
            self.requests.append((method, path, headers))
        answer = self._next()
        status = 502 if answer in (DROP, STALL) else int(answer)
        body = f"{method} {path}".encode()
        h2c.send_headers(stream_id, [(":status", str(status)), ("content-length", str(len(body)))])
        h2c.send_data(stream_id, body, end_stream=True)


class ForwardProxy(_Listener):
    """Answers absolute-form HTTP requests itself ("proxied <target>"); records the targets."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        super().__init__()

    def _accepted(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError, ValueError):
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with reader:
            while True:
                line = reader.readline(65536)
                if not line:
                    return
                target = line.decode("latin-1").split(" ")[1]
                while reader.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                self.targets.append(target)
                body = f"proxied {target}".encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)


class ConnectProxy(_Listener):
    """Tunnels ``CONNECT host:port`` to ``upstream``:port; records the targets.

    With ``refuse`` set to a status (407: proxy authentication required), every CONNECT
    is answered with it and no tunnel is made.
    """

    def __init__(self, *, upstream: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.refuse: int | None = None
        self.targets: list[str] = []
        super().__init__()

    def _accepted(self, conn: socket.socket) -> None:
        self._in_thread(self._tunnel, conn)

    def _tunnel(self, conn: socket.socket) -> None:
        self._track(conn)
        with conn, contextlib.suppress(OSError, ValueError):
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:  # byte-wise: nothing after the head is read
                chunk = conn.recv(1)
                if not chunk:
                    return
                head += chunk
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            with self._lock:
                self.targets.append(target)
            if method != "CONNECT" or self.refuse is not None:
                status = self.refuse or 405
                conn.sendall(b"HTTP/1.1 %d X\r\ncontent-length: 0\r\n\r\n" % status)
                return
            port = int(target.rsplit(":", 1)[1])
            upstream = socket.create_connection((self.upstream, port), timeout=5)
            self._track(upstream)
            with upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
                back.start()
                _pipe(conn, upstream)
                back.join(5)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def silent_address(address: str = "127.0.0.3") -> Iterator[int]:
    """A port on ``address`` whose SYNs go unanswered: connects to it hang until timeout.

    A listening socket with a backlog of 0 whose accept queue is already full: Linux
    drops further SYNs, as a black-holed host would. Yields the port.
    """
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        server.bind((address, 0))
        server.listen(0)
        port: int = server.getsockname()[1]
        for _ in range(4):  # fill the queue; the later ones hang, which is fine
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((address, port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def leaf(ca: trustme.CA, *names: str) -> trustme.LeafCert:
    """A server certificate for ``names`` from ``ca``."""
    return ca.issue_cert(*names)


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """An SSL context trusting only ``ca``."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx
