"""Addresses that fail after TCP: a hung process, a resetting one. Loopback only.

`hung_address` is a listening socket nobody accepts from: the kernel completes TCP
handshakes into its backlog and buffers what the client writes, and nothing is ever
read or answered (a process stuck in a deadlock or a GC pause). `resetting_address`
accepts, reads what the client sends first (its TLS ClientHello, or its request) and
closes with SO_LINGER 0: the client, connected, sees a reset (RST) during the TLS
handshake or while it waits for the response.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["free_port_pair", "hung_address", "name_listing_first", "resetting_address"]


@contextlib.contextmanager
def hung_address(address: str, port: int = 0) -> Iterator[int]:
    """A port on ``address`` that accepts TCP and never reads; yields the port."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((address, port))
        server.listen(64)
        yield server.getsockname()[1]
    finally:
        server.close()


@contextlib.contextmanager
def resetting_address(address: str, port: int = 0) -> Iterator[int]:
    """A port on ``address`` that resets every connection after its first bytes; yields the port."""
    server = socket.create_server((address, port))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError):
                conn.settimeout(1.0)
                conn.recv(65536)  # the TLS ClientHello or the request: the client is connected
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def free_port_pair(first: str, second: str) -> int:
    """A port free on both loopback addresses (bind, check, release)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind((first, 0))
            port: int = probe.getsockname()[1]
            with socket.socket() as other:
                try:
                    other.bind((second, port))
                except OSError:
                    continue
            return port
    raise AssertionError(f"no port free on both {first} and {second}")


def name_listing_first(
    fault_dns: Any, resolver: Any, unique_name: Any, addresses: list[str]
) -> str:
    """A fresh name for ``addresses`` whose cached answer lists ``addresses[0]`` first.

    The DNS server orders records as it likes; the resolver keeps the order it received
    for the record's TTL, so a few fresh names find one (each try is a coin toss).
    """
    for _ in range(20):
        name: str = unique_name("order")
        fault_dns.set(name, addresses)
        if resolver.resolve(name).addresses[0] == addresses[0]:
            return name
    raise AssertionError(f"no answer listed {addresses[0]} first in 20 tries")
