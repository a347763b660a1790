"""The public API's types, checked by ``mypy --strict`` over the files in tests/typing/.

Each ``type: ignore`` in those files marks a call mypy must reject; ``--strict`` turns
on ``warn_unused_ignores``, so an ignore that is no longer needed fails the check too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_the_typing_files_pass_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    files = sorted(str(p) for p in HERE.glob("test_*_types.py"))
    assert files, "no typing files"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            *files,
        ],
        cwd=ROOT,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},  # this tree's outlast
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
