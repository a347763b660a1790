"""docs/rehearsal.md: its snippets run, exactly as written, in a pytest run with the plugin."""

from __future__ import annotations

import re
from pathlib import Path

from outlast.chaos import FAULTS
from rehearse.test_sample_project import passed, run_pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "rehearsal.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_ten_line_rehearsal_is_ten_lines() -> None:
    first = python_blocks()[0]
    lines = [line for line in first.splitlines() if line.strip()]
    assert len(lines) <= 10 + 2  # the test itself, and its two imports
    assert lines[2].startswith("def test_")


def test_the_documented_snippets_pass(tmp_path: Path) -> None:
    runnable = python_blocks()[:2]
    for index, block in enumerate(runnable):
        (tmp_path / f"test_snippet_{index}.py").write_text(block)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    result = run_pytest(tmp_path, "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert passed(result) == 2, result.stdout


def test_the_fault_table_lists_every_fault() -> None:
    documented = re.findall(r"^\| `([a-z_0-9]+)[`=]", DOC.read_text(), flags=re.MULTILINE)
    faults = [name for name in documented if name in FAULTS or name.startswith(("dns_", "conn"))]
    assert sorted(faults) == sorted(FAULTS)
