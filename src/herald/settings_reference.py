"""docs/configuration.md, rendered from `Settings` so that the reference cannot drift from the code.

    python -m herald.settings_reference > docs/configuration.md

`tests/unit/test_docs_configuration.py` fails when the file and this rendering differ.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from herald.settings import Settings

REGENERATE = "python -m herald.settings_reference > docs/configuration.md"

_INTRO = f"""\
# Configuration reference

<!-- Generated from src/herald/settings.py by `{REGENERATE}`; edit the settings, not this file. -->

Herald reads every setting from an environment variable; each has a default that works, so an unset variable
means the default. The same variables apply to every command (`herald serve`, `herald api`, `herald worker`,
`herald migrate` and the store and maintenance commands); processes that share a database should share their
settings too (see [deployment.md](deployment.md)). Names are case-insensitive. A boolean is `true` or `false`
(`1`/`0`, `yes`/`no` and `on`/`off` are read too). A value Herald cannot read (`HERALD_TOKEN_TTL=soon`, a
negative retry delay) stops the command at start with a validation error naming the setting (`token_ttl`).
"""

_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def _type(field: FieldInfo) -> str:
    """The value's kind, as an operator types it into an environment variable."""
    annotation: Any = field.annotation
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"no rendering for the union {annotation!r}")
        annotation, optional = members[0], True
    if annotation is str:
        text = "text"
    elif annotation is bool:
        text = "boolean"
    elif annotation is int:
        text = "integer"
    elif annotation is float:
        text = "number"
    elif get_origin(annotation) is Literal:
        text = "one of " + ", ".join(f"`{choice}`" for choice in get_args(annotation))
    elif get_origin(annotation) is tuple and get_args(annotation)[1:] == (Ellipsis,):
        text = "numbers, comma-separated"
    else:
        raise TypeError(f"no rendering for the type {annotation!r}: add one to herald.settings_reference")
    for bound in field.metadata:  # Field(ge=1) and the like arrive as annotated_types.Ge(ge=1) ...
        for attribute, sign in _BOUNDS:
            value = getattr(bound, attribute, None)
            if value is not None:
                text += f" {sign} {_number(value)}"
    return text + (", optional" if optional else "")


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _default(value: object) -> str:
    """The default as it would be written in the variable."""
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        return "`" + ",".join(_number(v) for v in value) + "`"
    return f"`{_number(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def reference_markdown() -> str:
    """The whole of docs/configuration.md: an introduction and one row per setting, in the order of `Settings`."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    rows = [
        "| variable | type | default | what it does |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        if not field.description:
            raise ValueError(f"the setting {name} has no description")
        variable = f"`{prefix}{name.upper()}`"
        rows.append(f"| {variable} | {_type(field)} | {_default(field.default)} | {_cell(field.description)} |")
    return _INTRO + "\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference_markdown())
