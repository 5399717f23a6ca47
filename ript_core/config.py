"""attrs config classes <-> YAML, with errors that name the offending key.

Configs are plain ``attrs`` classes with type annotations. ``cattrs`` does
the structuring (it checks types against the annotations); this module only
forbids unknown keys and turns cattrs' exception groups into one readable
message such as ``train.lr: expected float, got 'fast'``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

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
    return conv


CONVERTER = _converter()


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _describe(exc: BaseException, path: str = "") -> list[str]:
    """Flatten cattrs' nested exception groups into ``key: problem`` lines."""
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return [f"{path + '.' if path else ''}{k}: unknown key" for k in sorted(exc.extra_fields)]
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
            f"invalid {source} for {cls.__name__}:\n  "
            + "\n  ".join(lines)
            + f"\n  (valid keys: {', '.join(f.name for f in attrs.fields(cls))})"
        ) from None


def unstructure(obj: Any) -> dict[str, Any]:
    return CONVERTER.unstructure(obj)


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from a YAML file, then apply ``key.sub=value`` overrides
    (values parsed as YAML, so ``lr=1e-4`` is a float)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    data = parse_yaml(path.read_text()) or {}
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
    node[parts[-1]] = parse_yaml(raw)


def dump_config(obj: Any, path: str | Path | None = None) -> str:
    text = yaml.safe_dump(unstructure(obj), sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text
