"""Observations on disk (``.npz``), for ``ript record --obs`` and ``--save-obs``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def save_observation(obs: Mapping[str, Any], path: str | Path) -> Path:
    """A raw env observation (nested dict of arrays and strings) as ``.npz``;
    nested keys are joined with ``/`` (``images/agentview``)."""
    flat: dict[str, np.ndarray] = {}

    def walk(d: Mapping[str, Any], prefix: str) -> None:
        for k, v in d.items():
            name = f"{prefix}{k}"
            if isinstance(v, Mapping):
                walk(v, name + "/")
            else:
                flat[name] = np.asarray(v)

    walk(obs, "")
    path = Path(path)
    with path.open("wb") as f:
        np.savez(f, **flat)
    return path


def load_observation(path: str | Path) -> dict[str, Any]:
    """Inverse of :func:`save_observation` (0-d string arrays become ``str``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"observation file {path} does not exist")
    obs: dict[str, Any] = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            value = data[key]
            if value.ndim == 0 and value.dtype.kind in "US":
                value = str(value)
            node = obs
            *parents, leaf = key.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
    return obs
