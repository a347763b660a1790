"""Fixtures for fleet mode: a real redis-server on loopback, and clean-up of fleets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outlast.fleet import _fleet

from .redis_server import RedisNotInstalled, RedisServer


def started(**options: object) -> RedisServer:
    try:
        return RedisServer(**options).start()  # type: ignore[arg-type]
    except RedisNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started redis-server on 127.0.0.1 at a free port; stopped after the test.

    Fails, never skips, when redis-server is missing (apt-get install redis-server).
    """
    server = started()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def _close_connected_fleets() -> Iterator[None]:
    """Fleets made by `outlast.fleet.connect` (through from_env) die with the test."""
    yield
    for fleet in list(_fleet._connected.values()):
        fleet.close()
    _fleet._connected.clear()
