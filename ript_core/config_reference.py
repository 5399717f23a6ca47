"""The configuration reference (docs/configuration.md), generated from the
attrs config classes themselves: every key, its type, its default and its
meaning. The meaning is the comment written beside (or right above) the
field in the source, so the code stays the one place to document a setting;
``python -m ript_core.config_reference > docs/configuration.md`` rewrites the
page and a test fails when the page and the classes disagree.

Why comments and not ``attrs.field(metadata=...)``: the classes read as plain
annotated fields with a comment each, and the comments were already there.
"""

from __future__ import annotations

import inspect
import io
import re
import textwrap
import tokenize
import typing
from collections.abc import Iterator
from typing import Any

import attrs
import yaml

_FIELD = re.compile(r"^    (\w+)\s*:")  # a field at the class body's indent


@attrs.frozen
class ConfigKey:
    key: str  # dotted, as in YAML and overrides: "env.max_steps"
    type: str
    default: str
    meaning: str


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from ``cls``'s source: the comment block right
    above a field and the comment after it, joined (``# --- group ---``
    headers are not a field's comment)."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whole line)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            whole = not tok.line[: tok.start[1]].strip()
            comments[tok.start[0]] = (tok.string.lstrip("#").strip(), whole)
    out: dict[str, str] = {}
    for lineno, line in enumerate(source.splitlines(), start=1):
        text, whole = comments.get(lineno, ("", False))
        match = _FIELD.match(line)
        if not match:
            continue
        above: list[str] = []
        n = lineno - 1
        while n in comments and comments[n][1] and not comments[n][0].startswith("-"):
            above.insert(0, comments[n][0])
            n -= 1
        own = " ".join([*above, *([text] if text and not whole else [])])
        out[match.group(1)] = own
    return out


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(str(v) for v in typing.get_args(tp))  # the allowed values
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return re.sub(r"\b(typing|builtins)\.", "", str(tp)).replace("NoneType", "None")


def _default(field: attrs.Attribute) -> str:
    """The default as it would be written in YAML (quoted where YAML needs it)."""
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()  # type: ignore[union-attr]
    text = yaml.safe_dump(default, default_flow_style=True, width=10_000)
    return text.strip().removesuffix("...").strip()


def config_keys(cls: type, prefix: str = "") -> Iterator[ConfigKey]:
    """Every key of ``cls``, depth first, sections after their parent's keys."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    sections = []
    for field in attrs.fields(cls):
        tp = hints[field.name]
        key = prefix + field.name
        if attrs.has(tp):
            sections.append((tp, key))
            continue
        yield ConfigKey(key, _type_name(tp), _default(field), comments.get(field.name, ""))
    for tp, key in sections:
        yield from config_keys(tp, key + ".")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def reference_markdown() -> str:
    """docs/configuration.md: one table per section of :class:`TrainConfig`."""
    from ript_core.rl.config import TrainConfig

    keys = list(config_keys(TrainConfig))
    lines = [
        "# Configuration reference",
        "",
        "Every key of a training config (`ript train CONFIG.yaml`, `key=value`",
        "overrides on the command line), with its type, default and meaning.",
        "Generated from the attrs classes (`ript_core/rl/config.py`,",
        "`ript_core/policy/config.py`) by `python -m ript_core.config_reference`;",
        "a test fails when this page and the classes disagree. How the settings",
        "work together: [training.md](training.md).",
    ]
    section = None
    for k in keys:
        head = k.key.rpartition(".")[0] or "top level"
        if head != section:
            section = head
            title = f"`{head}`" if head != "top level" else "Top level"
            lines += [
                "",
                f"## {title}",
                "",
                "| key | type | default | meaning |",
                "|---|---|---|---|",
            ]
        lines.append(
            f"| `{k.key}` | `{_cell(k.type)}` | `{_cell(k.default)}` | {_cell(k.meaning)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
