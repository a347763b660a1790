"""Fixtures for the exporter tests: a second DNS server that never answers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outlast.testing import DNSServer


@pytest.fixture
def blackhole() -> Iterator[DNSServer]:
    """A started `DNSServer` that drops every query."""
    with DNSServer() as server:
        server.fail("drop")
        yield server
