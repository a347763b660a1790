"""Fixtures for the outlast.requests tests: a test CA, resolvers and policies on loopback.

The scripted HTTP server is the transport tests' (``tests/http/loopback_http.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))

from requests_helpers import quick_policy

from outlast import Policy, Resolver
from outlast.testing import DNSServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


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


@pytest.fixture
def policy() -> Policy:
    return quick_policy()
