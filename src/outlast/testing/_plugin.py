"""outlast's pytest plugin: fixtures that rehearse outages in your own test suite.

Enable it with ``-p outlast.testing._plugin`` (or ``pytest_plugins =
["outlast.testing._plugin"]`` in your top-level ``conftest.py``); installed with the
``pytest11`` entry point it loads by itself. Fixtures:

- ``outlast_dns``: a started :class:`~outlast.testing.DNSServer`, and
  ``OUTLAST_DNS_PROVIDERS`` pointing at it for the test, so ``outlast.Client()``,
  ``outlast.AsyncClient()`` and ``Resolver.from_env()`` built in the test resolve
  through it.
- ``outlast_chaos``: a :class:`~outlast.testing.Chaos`; ``outlast_chaos("spec")``
  sets ``OUTLAST_CHAOS`` for the test.
- ``outlast_testing``: the policies' testing mode for the test (no backoff sleeps).

The fixtures are synchronous and the server runs in threads, so they serve sync and
asyncio tests alike (with anyio's or pytest-asyncio's plugin running the coroutine).
Environment changes go through ``monkeypatch`` and are undone after the test, and the
components clients share per configuration are forgotten with them, so no resolver
cache or breaker state passes from one test to the next.

Added in 0.1.0.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outlast import _root
from outlast.policy import set_testing
from outlast.testing._chaos import Chaos
from outlast.testing._dnsserver import DNSServer

__all__ = ["outlast_chaos", "outlast_dns", "outlast_testing"]


@pytest.fixture
def outlast_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[DNSServer]:
    """A DNSServer on loopback that outlast components built in the test ask (and only it).

    Added in 0.1.0.
    """
    with DNSServer() as server:
        monkeypatch.setenv("OUTLAST_DNS_PROVIDERS", server.provider)
        yield server
    _root.forget_shared()


@pytest.fixture
def outlast_chaos(monkeypatch: pytest.MonkeyPatch) -> Iterator[Chaos]:
    """Call it with an ``OUTLAST_CHAOS`` spec to rehearse faults in this test.

    Added in 0.1.0.
    """
    yield Chaos(monkeypatch.setenv, lambda name: monkeypatch.delenv(name, raising=False))
    _root.forget_shared()


@pytest.fixture
def outlast_testing() -> Iterator[None]:
    """Policies skip their backoff sleeps during the test (``set_testing(True)``).

    Added in 0.1.0.
    """
    with set_testing(True):
        yield
