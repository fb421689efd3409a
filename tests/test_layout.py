"""The package layout: the agent and the collector share only the core, `osmon`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Package -> the packages of ours it must never import.
FORBIDDEN = {"osmon": {"agent", "collector"}, "agent": {"collector"}, "collector": {"agent"}}


def imported_packages(path: Path) -> set[tuple[int, str]]:
    """(line, top-level package) of every import in a module, relative imports resolved to its own."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(node.lineno, alias.name.split(".")[0]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_never_imports_the_other_side(package: str) -> None:
    modules = sorted((ROOT / package).rglob("*.py"))
    assert modules, f"no modules under {package}/"
    crossings = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in modules
        for line, target in sorted(imported_packages(path))
        if target in FORBIDDEN[package]
    ]
    assert crossings == []


def test_the_walk_sees_an_import_that_crosses(tmp_path: Path) -> None:
    """The check above would catch a crossing import in any form."""
    module = tmp_path / "m.py"
    module.write_text(
        "import collector.store\nfrom agent import wire\ndef f():\n    from collector import x\n"
    )
    assert {target for _, target in imported_packages(module)} == {"collector", "agent"}
