"""Fixtures for the outlast.aiohttp tests: policies on loopback (CA, resolvers: root conftest).

The scripted HTTP server is the transport tests' (``tests/http/loopback_http.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "http"))

from aiohttp_helpers import quick_policy

from outlast import Policy


@pytest.fixture
def policy() -> Policy:
    return quick_policy()
