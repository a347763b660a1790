"""Fixtures for the rehearsal kit's tests: the plugin's own fixtures, a tiny web server.

The plugin is imported here because its ``pytest11`` entry point may not be installed
where these tests run; once it is, these definitions simply shadow the plugin's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outlast.testing._plugin import outlast_chaos, outlast_dns, outlast_testing
from rehearse.httpserver import TinyServer

__all__ = ["outlast_chaos", "outlast_dns", "outlast_testing"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def web() -> Iterator[TinyServer]:
    """A started TinyServer on 127.0.0.1."""
    with TinyServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_outlast_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no OUTLAST_* variable but those it sets."""
    import os

    for name in list(os.environ):
        if name.startswith("OUTLAST_"):
            monkeypatch.delenv(name)
