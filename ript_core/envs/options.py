"""Checking a backend's env options (``env.options`` in a config,
``--option k=v`` on the command line) before any simulator starts.

Every backend takes a few options (image size, camera switches, physics
constants) and must refuse the rest: a misspelt option that is silently
ignored would run hours of rollouts with the wrong setting. The backend
declares its options as a mapping of name -> default (``BackendSpec.env_options``);
:func:`check_env_options` rejects unknown names, checks each given value against
its default's type, and checks ``image_size`` against the backend's range. The
registry runs it (through ``BackendSpec.check_options``) before a spec's
``make_env`` or ``default_adapters`` sees the options.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any


def check_env_options(
    backend: str,
    options: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    image_size_range: tuple[int, int] = (16, 1024),
) -> dict[str, Any]:
    """``defaults`` updated with ``options``, after checking them.

    Raises ``ValueError`` naming the backend and the option: for a name not in
    ``defaults``; for a value whose type differs from its default's (a bool
    option takes only ``True``/``False``; an int option no bool; a float
    option also an int); for an ``image_size`` that is not an int inside
    ``image_size_range`` (pixels per side, inclusive). A default of ``None``
    accepts any value.
    """
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(
            f"{backend} backend: unknown env options {unknown}; known: {sorted(defaults)}"
        )
    for name, value in options.items():
        default = defaults[name]
        if name == "image_size":  # checked below, with its range
            continue
        if default is not None and not _same_kind(value, default):
            kind = {bool: "true or false", int: "an int", float: "a number"}.get(
                type(default), f"a {type(default).__name__}"
            )
            raise ValueError(f"{backend} backend: {name} must be {kind}, got {value!r}")
    merged = {**defaults, **options}
    if "image_size" in merged:
        lo, hi = image_size_range
        size = merged["image_size"]
        if isinstance(size, bool) or not isinstance(size, int) or not lo <= size <= hi:
            raise ValueError(
                f"{backend} backend: image_size must be an int in [{lo}, {hi}] (pixels per "
                f"side of every camera), got {size!r}"
            )
    return merged


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool):  # True is an int to Python, not to a config
        return False
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def parse_env_options(items: list[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` command-line items -> env options (values parsed as YAML)."""
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option {item!r}: expected KEY=VALUE")
        options[key] = yaml.safe_load(value)
    return options


def add_env_option_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--option KEY=VALUE`` flag (repeatable) that :func:`parse_env_options` reads."""
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env option (YAML value), as env.options in a config, e.g. --option image_size=64",
    )
