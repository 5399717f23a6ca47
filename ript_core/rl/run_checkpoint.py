"""Atomic training checkpoints.

Layout: ``<run_dir>/checkpoints/iter_000010/`` holds ``policy/`` (weights as
safetensors + config + stats + tokenizer, loadable on its own) and
``trainer.pt`` (optimizer, LR schedule, sampler history, RNG states of every
rank, iteration counter). A checkpoint is built in a ``.tmp`` directory and
renamed into place; ``latest`` is a relative symlink to the newest complete
one (so ``checkpoints/latest/policy`` works as a path) and is replaced
atomically, so a process killed at any instant leaves either the previous or
the new checkpoint, never half of one.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest"


def checkpoint_root(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    root = checkpoint_root(run_dir)
    pointer = root / LATEST
    if pointer.is_symlink():
        name = os.readlink(pointer)
    elif pointer.is_file():  # a text pointer: runs written before the symlink
        name = pointer.read_text().strip()
    else:
        return None
    path = root / name
    return path if (path / "trainer.pt").is_file() else None


def _point_latest(root: Path, name: str) -> None:
    """Replace ``root/latest`` atomically with a symlink to ``name`` (a text
    file holding the name where the filesystem has no symlinks)."""
    pointer_tmp = root / f"{LATEST}.tmp"
    pointer_tmp.unlink(missing_ok=True)
    try:
        os.symlink(name, pointer_tmp, target_is_directory=True)
    except OSError:
        pointer_tmp.write_text(name)
    os.replace(pointer_tmp, root / LATEST)


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: str | Path,
    iteration: int,
    save_policy_fn,
    trainer_state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``iteration`` atomically and point ``latest`` at it.

    ``save_policy_fn(directory)`` writes the policy. Older checkpoints beyond
    the ``keep`` newest are deleted only after the new one is complete.
    """
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"iter_{iteration:06d}"
    final = root / name
    tmp = root / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)  # leftover of a run killed mid-write
    tmp.mkdir()
    save_policy_fn(tmp / "policy")
    with open(tmp / "trainer.pt", "wb") as f:
        torch.save(trainer_state, f)
        f.flush()
        os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _point_latest(root, name)
    _fsync_dir(root)
    done = sorted(p for p in root.glob("iter_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in done[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_trainer_state(path: Path) -> dict[str, Any]:
    return torch.load(path / "trainer.pt", weights_only=False)
