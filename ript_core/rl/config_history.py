"""A run's config across restarts: what ``--resume`` may change, and its history.

A resumed run continues exactly only with the config it was written with, so
``--resume`` with a different config is refused with the list of differences,
unless each changed key is allowed by name (``--allow-change optim.lr``, or a
whole section: ``--allow-change optim``). Settings that change no number of
the run (where logs go, how long it runs, how often it saves) may change
freely. Every start of the run appends its config and the changes it was
allowed to ``<run_dir>/config_history.jsonl``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

HISTORY_FILE = "config_history.jsonl"

#: Keys a resume may change without a flag: they decide how long the run goes
#: on, where and how often it writes, not what it computes.
FREE_TO_CHANGE = (
    "run_dir",
    "ript.iterations",
    "checkpoint_every",
    "keep_checkpoints",
    "tensorboard",
    "wandb_project",
    "eval.every",
    "eval.videos",
    "rollout.worker_timeout_s",
)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1e-4}}`` -> ``{"optim.lr": 1e-4}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every flattened key whose value differs: key -> (before, after)."""
    old, new = flatten(before), flatten(after)
    return {
        k: (old.get(k), new.get(k))
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    }


def _allowed(key: str, allowed: Iterable[str]) -> bool:
    return any(key == a or key.startswith(f"{a}.") for a in allowed)


def check_resume(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    allowed: Iterable[str],
    checkpoint: str,
) -> dict[str, tuple[Any, Any]]:
    """The changes ``--resume`` makes to the run's config; raises ``ValueError``
    listing those neither free nor allowed by name."""
    allowed = list(allowed)
    found = {k: v for k, v in changes(before, after).items() if not _allowed(k, FREE_TO_CHANGE)}
    refused = {k: v for k, v in found.items() if not _allowed(k, allowed)}
    if refused:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        flags = " ".join(f"--allow-change {k}" for k in refused)
        raise ValueError(
            f"--resume: the config differs from the one {checkpoint} was written with ({listed}); "
            f"restore those settings, or pass {flags} to continue with them"
        )
    return found


def record(run_dir: Path, config: Mapping[str, Any], iteration: int, **event: Any) -> None:
    """Append this start of the run (its config, the iteration it starts at and
    ``event``: resumed_from, changes) to the run's config history."""
    line = {
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "iteration": iteration,
        **event,
        "config": config,
    }
    with (run_dir / HISTORY_FILE).open("a") as f:
        f.write(json.dumps(line, default=repr) + "\n")
