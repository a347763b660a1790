"""Fixtures for the outlast.http tests: a test CA, resolvers pointed at the DNS fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import trustme

from outlast import Resolver
from outlast.testing import DNSServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def resolver_for(fault_dns: DNSServer) -> Iterator[Callable[..., Resolver]]:
    """Make resolvers asking only `fault_dns`; all are closed after the test."""
    made: list[Resolver] = []

    def make(**options: object) -> Resolver:
        options.setdefault("timeout", 0.5)
        resolver = Resolver(providers=[fault_dns.provider], **options)  # type: ignore[arg-type]
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        resolver.close()
