"""The import contract: outlast's layers import downwards only (docs/architecture.md).

Every ``import`` in ``src/outlast`` is read from the AST, lazy ones inside functions
included (only ``if TYPE_CHECKING:`` blocks are left out: they are annotations, never
run). A module may import its own layer and the layers below it, never one above.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import outlast

SRC = Path(outlast.__file__).parent

#: Bottom to top. A layer may import any layer at its own rank or below.
RANKS: dict[str, int] = {
    "_exceptions": 0,
    "_async": 0,
    "_names": 1,
    "_events": 1,
    "_chaosplan": 1,
    "_config": 2,
    "_dial": 3,
    "dns": 3,
    "policy": 3,
    "fleet": 4,
    "chaos": 4,
    "observe": 4,
    "_root": 5,
    "http": 6,
    "aws": 6,
    "requests": 6,
    "aiohttp": 6,
    "__init__": 7,
    "__main__": 8,
    "cli": 8,
    "testing": 8,
}
#: Pairs at the same rank that must still not know each other.
APART: set[tuple[str, str]] = {
    ("dns", "policy"),
    ("policy", "dns"),
    ("dns", "_dial"),
    ("policy", "_dial"),
    ("_dial", "dns"),
    ("_dial", "policy"),
    ("fleet", "chaos"),
    ("chaos", "fleet"),
    ("observe", "fleet"),
    ("observe", "chaos"),
    # Integrations get the fleet and chaos from the composition root, never directly.
    *(
        (integration, plugged)
        for integration in ("http", "aws", "requests", "aiohttp")
        for plugged in ("fleet", "chaos")
    ),
    ("aws", "http"),
    ("http", "aws"),
    ("requests", "http"),
    ("requests", "aws"),
    ("aiohttp", "http"),
    ("aiohttp", "aws"),
    ("aiohttp", "requests"),
    ("requests", "aiohttp"),
}


def layer_of(module: str) -> str:
    """``outlast.dns._pool`` -> ``dns``; ``outlast`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    relative = path.relative_to(SRC.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id.endswith("TYPE_CHECKING")) or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target != "outlast":  # "from outlast import _root" imports outlast._root
                yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)
        else:
            yield from _imports(node, module, is_package)


def outlast_imports() -> Iterator[tuple[str, str]]:
    """(importing module, imported outlast module) for every import in src/outlast."""
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        for target in _imports(tree, module, path.name == "__init__.py"):
            if target == "outlast" or target.startswith("outlast."):
                yield module, target


def test_every_layer_has_a_rank() -> None:
    layers = {layer_of(_module_name(path)) for path in SRC.rglob("*.py")}
    assert layers <= set(RANKS), f"give these layers a rank: {sorted(layers - set(RANKS))}"


def violations() -> list[str]:
    found = []
    for importer, imported in outlast_imports():
        src, dst = layer_of(importer), layer_of(imported)
        if dst not in RANKS:  # "from outlast import _root" names the layer in the alias
            continue
        if src == dst:
            continue
        if RANKS[dst] > RANKS[src] or (src, dst) in APART:
            found.append(f"{importer} imports {imported} ({src} must not import {dst})")
    return sorted(set(found))


def test_layers_import_downwards_only() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from outlast.fleet import connect\n", "outlast.dns._resolver"),
        ("def f():\n    from outlast.chaos._dns import wrap_dns\n", "outlast.dns._resolver"),
        ("import outlast.http._backend\n", "outlast.aws._session"),
        ("from outlast import _root\n", "outlast.policy._policy"),
    ],
)
def test_the_contract_catches_an_upward_import(source: str, module: str) -> None:
    targets = list(_imports(ast.parse(source), module, is_package=False))
    src = layer_of(module)
    assert any(
        RANKS[layer_of(t)] > RANKS[src] or (src, layer_of(t)) in APART
        for t in targets
        if layer_of(t) in RANKS and layer_of(t) != src
    )
