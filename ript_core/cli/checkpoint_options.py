"""The options every command that loads a checkpoint takes, and how they reach
:func:`ript_core.policy.load_policy` / ``resolve_checkpoint``.

One definition, so that ``ript info``, ``convert``, ``eval``, ``export`` and
``record`` read any layout the same way: openpi's converted checkpoints carry
neither their training config's name nor a tokenizer, and a user who can
``ript convert`` one must be able to ``ript info`` or ``ript eval`` it too.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_checkpoint_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, preset: bool = True
) -> None:
    """``--openpi-config``, ``--tokenizer`` and (``preset``) ``--preset``."""
    parser.add_argument(
        "--openpi-config",
        help="an openpi checkpoint's training config, e.g. pi0_libero (openpi does not store it)",
    )
    if preset:
        parser.add_argument(
            "--preset", help="architecture preset for lerobot/openpi layouts (default pi0)"
        )
    parser.add_argument(
        "--tokenizer",
        help="tokenizer.model / tokenizer.json (or a directory holding one), for a checkpoint "
        "that has none (openpi's converted layout); replaces the checkpoint's own",
    )


def checkpoint_load_options(ns: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``load_policy`` / ``resolve_checkpoint`` that
    :func:`add_checkpoint_options`' flags give (only those set)."""
    options: dict[str, Any] = {}
    if getattr(ns, "openpi_config", None) is not None:
        options["openpi_config"] = ns.openpi_config
    if getattr(ns, "preset", None) is not None:
        options["preset"] = ns.preset
    if getattr(ns, "tokenizer", None) is not None:
        from ript_core.policy.io.tokenizer import load_tokenizer

        try:
            options["tokenizer"] = load_tokenizer(ns.tokenizer)
        except (FileNotFoundError, OSError, RuntimeError, ValueError) as exc:
            raise ValueError(f"--tokenizer {ns.tokenizer}: {exc}") from exc
    return options
