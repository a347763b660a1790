"""The plugin in a user's pytest run: tests/sample_project, in its own process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import outlast

SAMPLE = Path(__file__).resolve().parents[1] / "sample_project"
SOURCE = Path(outlast.__file__).resolve().parents[1]  # the outlast under test


def run_pytest(cwd: Path, *args: str, plugin: bool = True) -> subprocess.CompletedProcess[str]:
    """pytest in ``cwd`` with only the plugins named here (entry points not auto-loaded)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTLAST_", "PYTEST_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(SOURCE), str(cwd)]),
        PYTHONDONTWRITEBYTECODE="1",
        PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    command = [sys.executable, "-m", "pytest", "-p", "anyio.pytest_plugin"]
    if plugin:
        command += ["-p", "outlast.testing._plugin"]
    return subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=90
    )


def passed(result: subprocess.CompletedProcess[str]) -> int:
    match = re.search(r"(\d+) passed", result.stdout)
    return int(match.group(1)) if match else 0


def test_the_sample_project_passes_with_the_plugin() -> None:
    result = run_pytest(SAMPLE, "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert passed(result) == 4, result.stdout
    assert "failed" not in result.stdout
    assert "error" not in result.stdout.lower()


def test_without_the_plugin_its_fixtures_are_missing() -> None:
    """The fixtures come from the plugin, not from anything else on the path."""
    result = run_pytest(SAMPLE, "-q", "-k", "typo", plugin=False)
    assert result.returncode != 0
    assert "fixture 'outlast_chaos' not found" in result.stdout
