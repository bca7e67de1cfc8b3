"""Imports point one way: api -> db -> domain, delivery -> db -> domain. A wrong arrow fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import herald

ROOT = Path(herald.__file__).parent
FORBIDDEN = {
    "domain": ("herald.api", "herald.db", "herald.delivery", "herald.app", "herald.cli", "herald.dashboard",
               "herald.settings"),
    "db": ("herald.api", "herald.delivery", "herald.app", "herald.cli", "herald.dashboard"),
    "delivery": ("herald.api", "herald.app", "herald.cli", "herald.dashboard"),
    "api": ("herald.app", "herald.cli", "herald.dashboard", "herald.delivery"),
    "dashboard": ("herald.app", "herald.cli", "herald.delivery"),
}


def _imports(path: Path) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_down(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in _imports(path)
        if name.startswith(FORBIDDEN[package])
    ]
    assert wrong == []
