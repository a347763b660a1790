"""httpx's ``retries=`` under an outlast transport: one retry layer, never multiplied.

httpcore's ``retries=`` re-dials a failed connect inside the pool, with its own
backoff (0.5 s, 1 s, ...) that knows nothing of the call's deadline. Under an outlast
transport the policy already retries every connect failure (for every method), so
httpcore's are off: ``Transport(retries=2)`` with a 3-attempt policy dials a refusing
port 3 times, not 3 x 3 = 9, and within the caller's timeout. With
``OUTLAST_DISABLE=1`` the transport is plain httpx and ``retries=`` is httpcore's.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

import outlast
from outlast import Resolver
from outlast.http import AsyncTransport, Transport, classify_error, classify_result


def _policy() -> outlast.Policy:
    return outlast.Policy(
        retry=outlast.Retry(attempts=3, base=0.001, cap=0.005),
        budget=None,
        breaker=None,
        classify_error=classify_error,
        classify_result=classify_result,
    )


@pytest.fixture
def refusing_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dials(monkeypatch: pytest.MonkeyPatch, refusing_port: int) -> list[object]:
    """Every connect made to ``refusing_port``, whichever socket call makes it."""
    made: list[object] = []
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def counting_connect(self: socket.socket, address: object) -> None:
        if isinstance(address, tuple) and address[1] == refusing_port:
            made.append(address)
        connect(self, address)  # type: ignore[arg-type]

    def counting_connect_ex(self: socket.socket, address: object) -> int:
        if isinstance(address, tuple) and address[1] == refusing_port:
            made.append(address)
        return connect_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", counting_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", counting_connect_ex)
    return made


@pytest.fixture
def resolver() -> Iterator[Resolver]:
    made = Resolver(providers=["udp://127.0.0.1:9"], timeout=0.1)
    yield made
    made.close()


def test_sync_retries_do_not_multiply(
    resolver: Resolver, refusing_port: int, dials: list[object]
) -> None:
    transport = Transport(retries=2, resolver=resolver, policy=_policy())
    started = time.monotonic()
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{refusing_port}/")
    assert len(dials) == 3  # the policy's attempts; httpcore's would make it 9
    assert time.monotonic() - started < 1.0  # httpcore's own backoff sleeps 0.5 s + 1 s


def test_async_retries_do_not_multiply(resolver: Resolver, refusing_port: int) -> None:
    async def main() -> None:
        transport = AsyncTransport(retries=2, resolver=resolver, policy=_policy())
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{refusing_port}/")

    started = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started < 1.0  # httpcore's backoff: 0.5 s + 1 s per attempt


def test_disabled_keeps_httpcore_retries(
    monkeypatch: pytest.MonkeyPatch, refusing_port: int, dials: list[object]
) -> None:
    monkeypatch.setenv("OUTLAST_DISABLE", "1")
    with (
        httpx.Client(transport=Transport(retries=1)) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get(f"http://127.0.0.1:{refusing_port}/")
    assert len(dials) == 2
