"""Atomic training checkpoints.

Layout: ``<run_dir>/checkpoints/iter_000010/`` holds ``policy/`` (weights as
safetensors + config + stats + tokenizer, loadable on its own) and
``trainer.pt`` (optimizer, LR schedule, sampler history, RNG states of every
rank, iteration counter). A checkpoint is built in a ``.tmp`` directory and
renamed into place; ``latest`` is a relative symlink to the newest complete
one (so ``checkpoints/latest/policy`` works as a path) and is replaced
atomically, so a process killed at any instant leaves either the previous or
the new checkpoint, never half of one.

Durable against power loss too, in the order databases use: every file is
fsynced, then ``manifest.json`` (each file's size and SHA-256) is written and
fsynced last, the directory fsynced, renamed into place, its parent fsynced,
and only then ``latest`` moved (and the parent fsynced again). ``--resume``
(:func:`find_resumable`) checks checkpoints against their manifests, newest
first, and takes the newest complete one, naming each it skipped and why.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest"
MANIFEST = "manifest.json"
RUN_CONFIG = "run_config.json"  # read by --resume without loading trainer.pt
_ITER = re.compile(r"^iter_(\d+)$")


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


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's data and metadata to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


def _write_manifest(directory: Path) -> None:
    """fsync every file and directory below ``directory``, then record each
    file's size and checksum in ``MANIFEST``, written and fsynced last: a
    checkpoint with a valid manifest was complete on disk."""
    entries = {}
    for path in _files(directory):
        _fsync(path)
        entries[str(path.relative_to(directory))] = {
            "bytes": path.stat().st_size,
            "sha256": _sha256(path),
        }
    for sub in sorted((p for p in directory.rglob("*") if p.is_dir()), reverse=True):
        _fsync(sub)
    with open(directory / MANIFEST, "w") as f:
        json.dump({"files": entries}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync(directory)


def verify_checkpoint(path: Path) -> str | None:
    """Why checkpoint ``path`` cannot be resumed from, or None when every file
    matches its manifest (a checkpoint written before manifests: when its
    ``trainer.pt`` exists)."""
    if not path.is_dir():
        return "does not exist"
    manifest = path / MANIFEST
    if not manifest.is_file():
        if (path / "trainer.pt").is_file() and not path.name.endswith(".tmp"):
            return None  # written before manifests existed: nothing to check it against
        return f"no {MANIFEST}: its write never finished"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as exc:
        return f"{MANIFEST} is unreadable ({exc})"
    for name, want in files.items():
        f = path / name
        if not f.is_file():
            return f"{name} is missing"
        size = f.stat().st_size
        if size != want["bytes"]:
            return f"{name} has {size} bytes, its manifest says {want['bytes']} (truncated?)"
        if _sha256(f) != want["sha256"]:
            return f"{name} does not match its manifest's checksum (corrupted)"
    return None


def _iteration_dirs(root: Path) -> list[Path]:
    """``iter_*`` checkpoint directories, newest (highest iteration) first."""
    found = [p for p in root.glob("iter_*") if _ITER.match(p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(_ITER.match(p.name).group(1)), reverse=True)


def find_resumable(run_dir: str | Path) -> tuple[Path | None, list[tuple[str, str]]]:
    """The newest checkpoint of ``run_dir`` that verifies, and (name, why) for
    each newer one skipped (``("iter_000010", "trainer.pt has 12 bytes, ...")``)."""
    root = checkpoint_root(run_dir)
    skipped = []
    pointer = root / LATEST
    if pointer.is_symlink() or pointer.is_file():
        name = os.readlink(pointer) if pointer.is_symlink() else pointer.read_text().strip()
        if not (root / name).is_dir():
            skipped.append((LATEST, f"points at {name}, which does not exist"))
    for path in _iteration_dirs(root):
        problem = verify_checkpoint(path)
        if problem is None:
            return path, skipped
        skipped.append((path.name, problem))
    return None, skipped


def set_aside(run_dir: str | Path, names: list[str]) -> None:
    """Rename skipped checkpoints to ``<name>.broken``: kept for a look, but
    never again a candidate, nor counted by ``keep_checkpoints``."""
    root = checkpoint_root(run_dir)
    for name in names:
        if _ITER.match(name) and (root / name).is_dir():
            target = root / f"{name}.broken"
            if target.exists():
                shutil.rmtree(target)
            os.rename(root / name, target)


def read_run_config(checkpoint: Path) -> dict[str, Any] | None:
    """The run config a checkpoint was written with (None before run_config.json)."""
    path = checkpoint / RUN_CONFIG
    return json.loads(path.read_text()) if path.is_file() else None


def has_checkpoints(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds any checkpoint directory, complete or not."""
    return bool(_iteration_dirs(checkpoint_root(run_dir)))


def save_checkpoint(
    run_dir: str | Path,
    iteration: int,
    save_policy_fn: Callable[[Path], object],
    trainer_state: dict[str, Any],
    keep: int = 2,
    run_config: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint ``iteration`` durably and point ``latest`` at it.

    ``save_policy_fn(directory)`` writes the policy. Older checkpoints beyond
    the ``keep`` newest are deleted only after the new one is complete;
    ``run_config`` (the run's config) is stored beside the state. A
    failed write (a full disk, a read-only directory) raises and leaves
    ``latest`` where it was; its ``.tmp`` directory is removed.
    """
    root = checkpoint_root(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"iter_{iteration:06d}"
    final = root / name
    tmp = root / f"{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)  # leftover of a run killed mid-write
    try:
        tmp.mkdir()
        save_policy_fn(tmp / "policy")
        with open(tmp / "trainer.pt", "wb") as f:
            torch.save(trainer_state, f)
        if run_config is not None:
            (tmp / RUN_CONFIG).write_text(json.dumps(run_config, indent=1))
        _write_manifest(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # half a checkpoint is worth nothing
        raise
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync(root)  # the rename is on disk before latest can name it
    _point_latest(root, name)
    _fsync(root)
    done = [p for p in _iteration_dirs(root) if p != final]
    for old in done[keep - 1 :] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_trainer_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path / "trainer.pt", weights_only=False)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:  # a pre-manifest checkpoint
        raise ValueError(
            f"{path / 'trainer.pt'} cannot be read ({type(exc).__name__}: {exc}); move "
            f"{path.name} out of {path.parent} to resume from the checkpoint before it"
        ) from None
