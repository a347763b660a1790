"""The HTTP service behind the drill's name: healthy, or answering 503 to everything.

Each response closes its connection, as connection churn in a fleet does, so every
request needs a new connection and therefore a fresh name lookup: a client is only as
available as its DNS.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Dropper", "Service"]

CLIENT_HEADER = "X-Drill-Client"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        owner = self.server.owner
        status = owner.status
        client = self.headers.get(CLIENT_HEADER, "?")
        with owner.lock:
            owner.hits[client] += 1
            owner.arrivals.append((time.monotonic(), client))
        body = str(self.server.server_address[0]).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Service


class Service:
    """One HTTP service listening on the same port at several loopback addresses.

    The body of every response is the address that served it, so a client can tell
    when it has moved to a repaired record's new address.
    """

    def __init__(self, addresses: tuple[str, ...] = ("127.0.0.1", "127.0.0.3")) -> None:
        self.status = 200
        self.hits: Counter[str] = Counter()
        #: When each request reached the service, and from which client (monotonic s).
        self.arrivals: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self._servers: list[_Server] = []
        port = 0
        for address in addresses:
            server = _Server((address, port), _Handler)
            server.owner = self
            port = server.server_address[1]
            self._servers.append(server)
        self.port = port
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in self._servers
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)


class Dropper:
    """A dead address that silently drops connection attempts: a listener never accepting.

    A loopback listener with a backlog of 0 whose accept queue is filled at once: the
    kernel then drops every further SYN, so a client's connect hangs until its own
    timeout, as it does for a host that has gone away behind a firewall (a refusal, by
    contrast, is immediate). Linux behaves so; elsewhere a connect may be refused
    instead, which only makes the scenario milder.
    """

    def __init__(self, address: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._listener.bind((address, port))
        except OSError:
            self._listener.close()
            raise
        self._listener.listen(0)
        self._fillers: list[socket.socket] = []
        for _ in range(3):  # more than the queue holds
            filler = socket.socket(family, socket.SOCK_STREAM)
            filler.setblocking(False)
            filler.connect_ex((address, port))
            self._fillers.append(filler)

    def close(self) -> None:
        for sock in (*self._fillers, self._listener):
            sock.close()
