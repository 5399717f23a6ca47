"""The proprio state of robosuite-based backends (LIBERO, robosuite).

A public helper module (``from ript_core import robosuite_state``). Both
backends observe robosuite's ``robot0_*`` observables; their envs return the
same raw 9-d state and their observation adapters turn it into the same 8-d
policy state (openpi's LIBERO layout), so a checkpoint's state statistics
mean the same quantities on either backend:

- raw (:func:`raw_state`): ``eef_pos (3), eef_quat (4, x y z w), gripper_qpos (2)``
- policy (:func:`policy_state`): ``eef_pos (3), axis-angle of eef_quat (3), gripper_qpos (2)``
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

RAW_LAYOUT = {"eef_pos": slice(0, 3), "eef_quat": slice(3, 7), "gripper_qpos": slice(7, 9)}
RAW_DIM = 9
POLICY_DIM = 8
OBSERVABLES = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos")


def quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """Axis-angle ``axis * angle`` (float64, 3) of a unit quaternion ``(x, y, z, w)``.

    openpi's / robosuite's convention: ``angle = 2 acos(w)`` in ``[0, 2 pi]``
    (a quaternion with ``w < 0`` gives an angle above pi rather than being
    flipped to the other hemisphere), and the zero vector when the rotation
    is the identity. ``w`` is clipped to ``[-1, 1]`` against rounding.
    """
    q = np.asarray(quat, dtype=np.float64).reshape(4)
    w = min(max(float(q[3]), -1.0), 1.0)
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3, dtype=np.float64)
    return q[:3] * (2.0 * math.acos(w)) / den


def raw_state(observation: Mapping[str, Any]) -> np.ndarray:
    """robosuite's observation dict -> the raw 9-d float64 state.

    robosuite samples its proprio observables at the first physics substep of
    a control step, so after ``step()`` they trail the simulator's final
    state by a few milliseconds of motion; openpi's pipeline sees the same.
    """
    return np.concatenate([observation[key] for key in OBSERVABLES]).astype(np.float64)


def policy_state(raw: np.ndarray, backend: str) -> np.ndarray:
    """The raw 9-d state -> the 8-d policy state; ``backend`` names the
    backend in the error when ``raw`` has another shape."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.shape != (RAW_DIM,):
        raise ValueError(
            f"{backend} observation state has shape {raw.shape}, expected ({RAW_DIM},) = "
            f"eef_pos (3), eef_quat xyzw (4), gripper_qpos (2); is this observation from the "
            f"{backend} backend?"
        )
    return np.concatenate([raw[0:3], quat2axisangle(raw[3:7]), raw[7:9]])
