"""Fixtures the httpx transport tests share (the DNS server and resolvers: root conftest)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from outlast import Resolver


@pytest.fixture(params=["asyncio", "trio"])
def backend_name(request: pytest.FixtureRequest) -> str:
    """The async backend an ``outlast.AsyncTransport`` test runs under (anyio's names)."""
    return str(request.param)


@pytest.fixture
def resolver(resolver_for: Callable[..., Resolver]) -> Resolver:
    """A resolver asking only the test's DNS server, closed after the test."""
    return resolver_for()
