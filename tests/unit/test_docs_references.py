"""The operator docs name only what exists: every HERALD_* variable is a setting, and every `herald ...` command
line names a real command, subcommand and options."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from herald.cli import app
from herald.settings import Settings

DOCS = Path(__file__).parents[2] / "docs"
CHECKED = ["deployment.md", "receivers.md", "configuration.md"]
WITH_COMMANDS = ["deployment.md", "configuration.md"]
SETTINGS = {f"HERALD_{name.upper()}" for name in Settings.model_fields}


def code_lines(text: str) -> list[str]:
    """Inline code spans and the lines of fenced blocks: where commands are written."""
    found: list[str] = []
    for block in re.finditer(r"^```[^\n]*\n(.*?)^```$", text, flags=re.M | re.S):
        found.extend(block.group(1).splitlines())
    prose = re.sub(r"^```[^\n]*\n.*?^```$", "", text, flags=re.M | re.S)
    found.extend(re.findall(r"`([^`\n]+)`", prose))
    return found


def command_lines(text: str) -> list[list[str]]:
    """Each `herald <command> ...` written in code, as its words."""
    lines = []
    for line in code_lines(text):
        for m in re.finditer(r"(?:^|[\s/])herald((?: [^\s#]+)+)", line):
            lines.append(m.group(1).split())
    return lines


@pytest.mark.parametrize("name", CHECKED)
def test_every_variable_named_is_a_setting(name: str) -> None:
    named = set(re.findall(r"\bHERALD_[A-Z_]+\b", (DOCS / name).read_text(encoding="utf-8")))
    assert named, name
    assert named <= SETTINGS, f"{name} names variables Herald does not read: {sorted(named - SETTINGS)}"


@pytest.mark.parametrize("name", WITH_COMMANDS)
def test_every_command_named_exists(name: str) -> None:
    root = typer.main.get_command(app)
    problems = []
    lines = command_lines((DOCS / name).read_text(encoding="utf-8"))
    assert lines, name
    for words in lines:
        command: Any = root  # typer's command objects (its own click, in recent releases): groups have .commands
        path = ["herald"]
        rest = list(words)
        while hasattr(command, "commands") and rest and re.fullmatch(r"[a-z][a-z-]*", rest[0]):
            sub = command.commands.get(rest[0])
            if sub is None:
                problems.append(f"{' '.join(path)} has no command {rest[0]!r} ({' '.join(words)})")
                break
            command, path, rest = sub, [*path, rest.pop(0)], rest
        else:
            if hasattr(command, "commands"):
                problems.append(f"{' '.join(path)} needs a subcommand ({' '.join(words)})")
                continue
            options = {opt for param in command.params for opt in getattr(param, "opts", [])}
            for word in rest:
                option = word.strip("[]").split("=")[0]
                if option.startswith("--") and option not in options:
                    problems.append(f"{' '.join(path)} has no option {option} ({' '.join(words)})")
    assert not problems, "\n".join(problems)


def test_the_reader_finds_commands() -> None:
    text = "Run `herald stores create --name N`.\n```ini\nExecStart=/opt/herald/.venv/bin/herald api --port %i\n```\n"
    assert command_lines(text) == [["api", "--port", "%i"], ["stores", "create", "--name", "N"]]


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```$", "", text, flags=re.M | re.S), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


@pytest.mark.parametrize("name", [*CHECKED, "operations.md", "../README.md"])
def test_every_relative_link_resolves(name: str) -> None:
    source = (DOCS / name).resolve()
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (source.parent / path).resolve() if path else source
        if not linked.exists():
            problems.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(linked.read_text(encoding="utf-8")):
            problems.append(f"{target}: no heading with that anchor in {linked.name}")
    assert not problems, f"{name}: " + "; ".join(problems)
