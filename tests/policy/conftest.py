"""Fixtures for the policy tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from outlast.policy import set_testing

from .helpers import FakeClock, Recorder


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(autouse=True)
def _no_testing_mode_leaks() -> Iterator[None]:
    yield
    set_testing(False)
