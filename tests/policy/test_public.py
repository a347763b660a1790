"""The policy layer's public face: exports, docstrings, layering, configuration, testing mode."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import outlast.policy
from outlast import ConfigError, Settings
from outlast.policy import (
    CircuitBreaker,
    Policy,
    Retry,
    RetryBudget,
    RetryScheduled,
    force_open,
    is_testing,
    set_testing,
)

from .helpers import FakeClock, Recorder

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "outlast" / "policy"


def test_every_public_object_says_when_it_was_added() -> None:
    for name in outlast.policy.__all__:
        obj = getattr(outlast.policy, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert "Added in 0.1.0." in (obj.__doc__ or ""), name


def test_all_is_sorted_and_complete() -> None:
    exported = outlast.policy.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n[0].islower(), n))
    for name in exported:
        assert hasattr(outlast.policy, name), name


def test_the_policy_layer_imports_no_integration_and_no_dns() -> None:
    forbidden = ("httpx", "httpcore", "botocore", "boto3", "outlast.dns", "outlast.http",
                 "outlast.aws", "dns")  # fmt: skip
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name} has no module docstring"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_defaults_match_the_documented_settings() -> None:
    settings = Settings.from_env({})
    assert Retry() == Retry.from_settings(settings)
    assert RetryBudget().ratio == settings.retry_budget
    assert CircuitBreaker() == CircuitBreaker.from_settings(settings)


def test_from_env_reads_the_outlast_variables() -> None:
    policy = Policy.from_env(
        {
            "OUTLAST_RETRY_ATTEMPTS": "5",
            "OUTLAST_RETRY_BASE": "0.2",
            "OUTLAST_RETRY_CAP": "3",
            "OUTLAST_RETRY_BUDGET": "0.25",
            "OUTLAST_BREAKER_FAILURES": "7",
            "OUTLAST_BREAKER_RESET": "9",
        }
    )
    assert policy.retry == Retry(attempts=5, base=0.2, cap=3.0)
    assert policy.budget is not None
    assert policy.budget.ratio == 0.25
    assert policy.breaker == CircuitBreaker(failures=7, reset=9.0)
    with pytest.raises(ConfigError) as info:
        Policy.from_env({"OUTLAST_RETRY_ATTEMPTS": "lots"})
    assert info.value.setting == "OUTLAST_RETRY_ATTEMPTS"


def test_disable_makes_a_pass_through_policy() -> None:
    policy = Policy.from_env({"OUTLAST_DISABLE": "1"})
    assert not policy.enabled
    assert policy.state is None
    calls = [0]

    def fail() -> None:
        calls[0] += 1
        raise ConnectionError

    for _ in range(20):
        with pytest.raises(ConnectionError):
            policy.call(fail)
    assert calls == [20]  # never retried, never refused
    assert policy.for_key("x").call(lambda: 3) == 3


def test_bad_policy_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="retry"):
        Policy(retry=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_keys"):
        Policy(max_keys=0)
    with pytest.raises(ConfigError, match="attempts"):
        set_testing(True, attempts=0)
    with pytest.raises(ConfigError, match="key"):
        Policy().for_key(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"a policy with a circuit breaker \(breaker=None\)"):
        force_open(Policy(breaker=None))
    # It has a breaker, turned off: say so rather than ask for a breaker.
    with pytest.raises(ConfigError, match="an enabled policy") as info:
        force_open(Policy(enabled=False))
    assert "with a circuit breaker" not in str(info.value)


def test_testing_mode_skips_sleeps_and_caps_attempts(clock: FakeClock) -> None:
    recorder = Recorder()
    policy = Policy(
        retry=Retry(attempts=5, base=1.0, cap=10.0), breaker=None, clock=clock,
        sleep=clock.sleep, listeners=[recorder],
    )  # fmt: skip
    calls = [0]

    def fail() -> None:
        calls[0] += 1
        raise TimeoutError

    with set_testing(True):
        assert is_testing()
        with pytest.raises(TimeoutError):
            policy.call(fail)
    assert not is_testing()
    assert calls == [5]
    assert clock.slept == []  # no backoff slept...
    assert len(recorder.of(RetryScheduled)) == 4  # ...but every retry still reported
    with set_testing(True, attempts=2), pytest.raises(TimeoutError):
        policy.call(fail)
    assert calls == [7]


def test_the_decorator_keeps_the_signature_and_wraps_async() -> None:
    policy = Policy(retry=Retry(attempts=2, base=0.0, cap=0.0))

    @policy
    def add(a: int, b: int = 1) -> int:
        """Adds."""
        return a + b

    @policy
    async def aadd(a: int) -> int:
        return a + 1

    import asyncio

    assert add(1, b=2) == 3
    assert add.__doc__ == "Adds."
    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 1) -> 'int'"
    assert inspect.iscoroutinefunction(aadd)
    assert asyncio.run(aadd(1)) == 2


def test_the_public_api_type_checks_under_mypy_strict() -> None:
    target = ROOT / "tests" / "typing" / "test_policy_types.py"
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(target)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
