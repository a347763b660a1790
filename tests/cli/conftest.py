"""Fixtures for the command's tests: more DNS servers, and the command as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from outlast.testing import DNSServer

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def blackhole() -> Iterator[DNSServer]:
    """A started `DNSServer` that drops every query."""
    with DNSServer() as server:
        server.fail("drop")
        yield server


@pytest.fixture
def other_dns() -> Iterator[DNSServer]:
    """A second started `DNSServer`, for providers that disagree."""
    with DNSServer() as server:
        yield server


def outlast(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m outlast ARGS`` as a user would, with this tree's outlast first."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OUTLAST_")}
    path = os.pathsep.join(filter(None, [str(SRC), base.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "outlast", *args],
        capture_output=True,
        text=True,
        env={**base, "PYTHONPATH": path, **(env or {})},
        timeout=60,
        check=False,
    )
