"""Checks that a backend's observations keep the env contract.

The contract (``docs/writing-a-plugin.md``): an observation is a dict with
``"images"`` (camera name -> ``HxWx3 uint8``), ``"state"`` (1-D float vector,
finite) and ``"instruction"`` (str). A violation is a bug in the backend, so
the error names the backend and the key rather than failing deep in the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class ObservationError(ValueError):
    """A backend returned an observation that breaks the env contract."""


def validate_observation(obs: Mapping[str, Any], backend: str) -> None:
    def fail(key: str, problem: str) -> None:
        raise ObservationError(f"backend {backend!r}: observation key {key!r} {problem}")

    if not isinstance(obs, Mapping):
        raise ObservationError(
            f"backend {backend!r}: observation is {type(obs).__name__}, not a dict"
        )
    for key in ("images", "state", "instruction"):
        if key not in obs:
            fail(key, "is missing")
    images = obs["images"]
    if not isinstance(images, Mapping) or not images:
        fail("images", "must be a non-empty dict of camera name -> HxWx3 uint8 array")
    for cam, img in images.items():
        key = f"images.{cam}"
        if not isinstance(img, np.ndarray):
            fail(key, f"is {type(img).__name__}, expected a numpy array")
        if img.ndim != 3 or img.shape[-1] != 3:
            fail(key, f"has shape {img.shape}, expected (H, W, 3)")
        if img.dtype != np.uint8:
            fail(key, f"has dtype {img.dtype}, expected uint8")
    state = obs["state"]
    if not isinstance(state, np.ndarray) or state.ndim != 1:
        fail("state", f"must be a 1-D numpy array, got {getattr(state, 'shape', type(state))}")
    if not np.issubdtype(state.dtype, np.floating):
        fail("state", f"has dtype {state.dtype}, expected a float dtype")
    if not np.all(np.isfinite(state)):
        fail("state", f"contains non-finite values: {state}")
    if not isinstance(obs["instruction"], str):
        fail("instruction", f"is {type(obs['instruction']).__name__}, expected str")


def checked_action(action: Any, dim: int, backend: str, layout: str, dtype: Any = np.float64):
    """``action`` as a flat ``dim``-vector of ``dtype``, or a ``ValueError`` naming
    the backend and the expected ``layout`` (a wrong width or a non-finite
    value is never stepped into a simulator)."""
    a = np.asarray(action, dtype=dtype).reshape(-1)
    if a.shape != (dim,):
        raise ValueError(
            f"{backend} takes {dim}-d actions ({layout}), got shape {np.shape(action)}"
        )
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{backend} got a non-finite action {a}")
    return a
