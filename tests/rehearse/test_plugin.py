"""The plugin's fixtures in outlast's own suite, sync and asyncio; outlast.testing's surface."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Callable

import pytest

import outlast
import outlast.chaos
import outlast.testing
from outlast import ConfigError, Settings
from outlast.testing import Chaos, DNSServer


def test_outlast_dns_points_outlast_at_the_server(
    outlast_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("plugin")
    outlast_dns.set(name, ["127.0.0.9"])
    assert os.environ["OUTLAST_DNS_PROVIDERS"] == outlast_dns.provider
    with outlast.Resolver.from_env() as resolver:
        assert resolver.resolve(name).addresses == ("127.0.0.9",)
    assert outlast_dns.queries_for(name) >= 1


@pytest.mark.anyio
async def test_outlast_dns_serves_asyncio_tests(
    outlast_dns: DNSServer, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("aplugin")
    outlast_dns.set(name, ["127.0.0.7"])
    with outlast.Resolver.from_env() as resolver:
        answer = await resolver.aresolve(name)
    assert answer.addresses == ("127.0.0.7",)


def test_outlast_chaos_sets_validates_and_clears(outlast_chaos: Chaos) -> None:
    plan = outlast_chaos("dns_empty=1.0@*.amazonaws.com,seed=2")
    assert Settings.from_env().chaos == plan
    with pytest.raises(ConfigError, match="OUTLAST_CHAOS"):
        outlast_chaos("dns_empty=yes")
    assert os.environ["OUTLAST_CHAOS"] == "dns_empty=1.0@*.amazonaws.com,seed=2"  # kept
    outlast_chaos.clear()
    assert "OUTLAST_CHAOS" not in os.environ
    with pytest.raises(ValueError, match="empty"):
        outlast_chaos("  ")


def test_outlast_testing_turns_testing_mode_on(outlast_testing: None) -> None:
    assert outlast.testing.is_testing()


def test_outside_the_fixture_testing_mode_is_off() -> None:
    assert not outlast.testing.is_testing()


@pytest.mark.parametrize("module", [outlast.testing, outlast.chaos])
def test_all_lists_exactly_the_public_names(module: types.ModuleType) -> None:
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and name != "annotations"
        and not isinstance(value, types.ModuleType)
    }
    assert set(module.__all__) == public
    assert module.__all__ == sorted(module.__all__)


def test_importing_outlast_testing_does_not_import_pytest() -> None:
    """A service may use outlast.testing helpers without pytest installed."""
    code = "import sys, outlast.testing; print('pytest' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"
