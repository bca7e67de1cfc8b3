"""docs/configuration.md is the rendering of `Settings`: a setting added, renamed or redescribed without
regenerating the file fails here."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

from herald.settings import Settings
from herald.settings_reference import reference_markdown

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "configuration.md"
REGENERATE = ".venv/bin/python -m herald.settings_reference > docs/configuration.md"


def test_configuration_reference_is_generated_from_the_settings() -> None:
    expected = reference_markdown()
    found = DOC.read_text(encoding="utf-8")
    if found != expected:
        diff = "".join(difflib.unified_diff(
            found.splitlines(keepends=True), expected.splitlines(keepends=True),
            "docs/configuration.md", "reference_markdown()",
        ))
        raise AssertionError(f"docs/configuration.md is out of date; regenerate it with\n    {REGENERATE}\n\n{diff}")


def test_every_setting_has_its_row() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `HERALD_{name.upper()}` |")), None)
        assert row is not None, name
        assert field.description is not None and " ".join(field.description.split()) in row, name


def test_the_regenerate_command_prints_the_reference() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "herald.settings_reference"], cwd=ROOT, capture_output=True, text=True, check=True,
        encoding="utf-8",
    )
    assert done.stdout == reference_markdown()
