"""SECURITY.md names a test for each promise: every file and test it names must exist, so that the list
cannot silently go stale when a test is renamed or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)?)`|`::(\w+)`")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_test_security_md_names_exists() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    missing: list[str] = []
    last_file: Path | None = None
    named = 0
    for file_part, test_part, bare in REFERENCE.findall(text):
        if file_part:
            last_file = ROOT / file_part
            if not last_file.exists():
                missing.append(file_part)
                continue
            name = test_part.removeprefix("::")
        else:
            name = bare  # `::name`: a test of the file named just before
        if name:
            named += 1
            assert last_file is not None, f"::{name} follows no file"
            if last_file.exists() and name not in _tests_in(last_file):
                missing.append(f"{last_file.relative_to(ROOT)}::{name}")
    assert named >= 20
    assert missing == [], missing
