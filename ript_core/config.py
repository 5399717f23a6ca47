"""attrs config classes <-> YAML, with errors that name the offending key.

Configs are plain ``attrs`` classes with type annotations. ``cattrs`` does
the structuring (it checks types against the annotations); this module only
forbids unknown keys and turns cattrs' exception groups into one readable
message such as ``train.lr: expected float, got 'fast'``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import attrs
import cattrs
import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not fit its attrs class."""


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, prefer_attrib_converters=True)

    # cattrs would happily turn "3" into 3 and 1.5 into 1; a config typo should fail instead.
    def strict(kind: type):
        def structure(value: Any, _: type) -> Any:
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise TypeError(f"expected {kind.__name__}, got {value!r}")
            return value

        return structure

    for kind in (int, float, str, bool):
        conv.register_structure_hook(kind, strict(kind))

    # cattrs reads a string as the list of its characters: `tasks: reach-red`
    # would become ['r', 'e', ...]; a list setting must be written as one
    def strict_list(value: Any, kind: type) -> list[Any]:
        if not isinstance(value, list | tuple):
            hint = f" (write [{value}])" if isinstance(value, str) else ""
            raise TypeError(f"expected a list, got {value!r}{hint}")
        (item,) = get_args(kind) or (Any,)
        return [conv.structure(v, item) for v in value]

    conv.register_structure_hook_func(lambda t: get_origin(t) is list, strict_list)
    return conv


CONVERTER = _converter()


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)
    and never reads ``20:24`` as a base-60 number (YAML 1.1 makes it 1224): a
    colon means an init-state range here."""


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, _rx in (
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0b[0-1_]+|0[0-7_]+|0|[1-9][0-9_]*|0x[0-9a-fA-F_]+)$"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
    ),
    ("tag:yaml.org,2002:float", r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_rx), list("-+0123456789."))


def parse_yaml(text: str, source: str = "YAML") -> Any:
    """``text`` as YAML, or :class:`ConfigError` naming ``source`` and the
    line and column of a syntax error."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{where} is not valid YAML ({problem}); fix it there") from None


def _unknown_key(path: str, key: str, cls: type) -> str:
    """``section.key: unknown key`` with a close match and the section's valid keys."""
    valid = [f.name for f in attrs.fields(cls)] if attrs.has(cls) else []
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"valid keys of {path}" if path else "valid top-level keys"
    return f"{path + '.' if path else ''}{key}: unknown key{hint}; {where}: {', '.join(valid)}"


def _describe(exc: BaseException, path: str = "") -> list[str]:
    """Flatten cattrs' nested exception groups into ``key: problem`` lines."""
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return [_unknown_key(path, k, exc.cl) for k in sorted(exc.extra_fields)]
    if isinstance(exc, BaseExceptionGroup):
        lines: list[str] = []
        for sub in exc.exceptions:
            note = next(
                (n for n in getattr(sub, "__notes__", []) if "attribute" in n or "index" in n),
                None,
            )
            sub_path = path
            if note is not None and hasattr(note, "name"):
                sub_path = f"{path}.{note.name}" if path else str(note.name)
            elif note is not None and hasattr(note, "index"):
                sub_path = f"{path}[{note.index}]"
            lines.extend(_describe(sub, sub_path))
        return lines
    return [f"{path or '<root>'}: {exc}"]


def structure(cls: type[T], data: Mapping[str, Any] | None, source: str = "config") -> T:
    """Build ``cls`` from a mapping, or raise :class:`ConfigError` naming every bad key."""
    try:
        return CONVERTER.structure(dict(data or {}), cls)
    except Exception as exc:  # cattrs raises ClassValidationError / plain errors
        lines = _describe(exc)
        raise ConfigError(
            f"invalid {source} for {cls.__name__}:\n  " + "\n  ".join(lines)
        ) from None


def unstructure(obj: Any) -> dict[str, Any]:
    return CONVERTER.unstructure(obj)


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from a YAML file, then apply ``key.sub=value`` overrides
    (values parsed as YAML, so ``lr=1e-4`` is a float)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    data = parse_yaml(path.read_text(), source=str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    for item in overrides or []:
        apply_override(data, item)
    return structure(cls, data, source=str(path))


def apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like 'section.key=value'")
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = parse_yaml(raw, source=f"override {item!r}")


def dump_config(obj: Any, path: str | Path | None = None) -> str:
    text = yaml.safe_dump(unstructure(obj), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text
