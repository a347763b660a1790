"""The project's own promises: CI runs the README's test command, the changelog is kept."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_the_quickstart_has_exactly_two_command_lines() -> None:
    commands = quickstart_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = quickstart_commands()[1]
    assert "pytest" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_the_changelog_has_an_unreleased_section() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog


def test_the_first_quickstart_command_is_what_a_user_runs() -> None:
    install = quickstart_commands()[0]
    assert install.startswith("python3 -m pip install 'outlast[")
    assert install.endswith("&& outlast drill")
    for contributor_only in ("apt-get", "--group", " -e ", "sudo"):
        assert contributor_only not in install
    # From a checkout, the same install with the checkout in place of the package.
    prose = " ".join((ROOT / "README.md").read_text().split())
    assert "`python3 -m pip install '.[drill]'`" in prose


def _pyproject() -> dict[str, object]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    project: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def test_the_license_file_matches_the_metadata() -> None:
    assert _pyproject()["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text


def test_classifiers_name_every_supported_python_and_the_operating_systems() -> None:
    project = _pyproject()
    classifiers = project["classifiers"]
    assert isinstance(classifiers, list)
    assert project["requires-python"] == ">=3.10"
    versions = [c.rsplit(" :: ", 1)[1] for c in classifiers if re.search(r":: 3\.\d+$", c)]
    assert versions == ["3.10", "3.11", "3.12", "3.13"]
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert running in versions, f"tests run on {running}: add its classifier"
    assert "Operating System :: POSIX :: Linux" in classifiers
    platforms = (ROOT / "docs" / "platforms.md").read_text()
    for version in versions:
        assert version in platforms
    assert not any(c.startswith("License ::") for c in classifiers)  # the SPDX field says it


def test_the_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, page.name


#: What exists only on POSIX systems: each use needs a fallback (``hasattr``/``getattr``).
POSIX_ONLY_OS = {"register_at_fork", "fork", "forkpty", "getuid", "geteuid", "setsid", "killpg"}
POSIX_ONLY_MODULES = {"fcntl", "pwd", "grp", "termios", "resource"}

#: Known offenders, each to be given a fallback by its module's owner; a fixed one must
#: be removed from here (the test fails until it is).
KNOWN_POSIX_ONLY: dict[str, set[str]] = {}


def _guarded_imports(tree: ast.AST) -> set[int]:
    """Line numbers of imports inside ``try: ... except ImportError`` (they have a fallback)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        lines.add(sub.lineno)
    return lines


def test_no_posix_only_call_without_a_fallback() -> None:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "src").rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        guarded = _guarded_imports(tree)
        for node in ast.walk(tree):
            name = None
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno in guarded:
                continue
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in POSIX_ONLY_OS
                and f'hasattr(os, "{node.attr}")' not in source
                and f'getattr(os, "{node.attr}"' not in source
            ):
                name = f"os.{node.attr}"
            elif isinstance(node, ast.Import):
                name = next((a.name for a in node.names if a.name in POSIX_ONLY_MODULES), None)
            elif isinstance(node, ast.ImportFrom) and node.module in POSIX_ONLY_MODULES:
                name = node.module
            if name is not None:
                found.setdefault(str(path.relative_to(ROOT)), set()).add(name)
    assert found == KNOWN_POSIX_ONLY
