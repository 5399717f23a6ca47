"""ManiSkill env <-> PI0 policy translators.

Observation:

1. :func:`compose_state` -- 8-d state ``tcp_pos (3) + axis-angle of the TCP
   quaternion (3) + finger joint positions (2)``: the same layout as the
   LIBERO convention (end-effector position, axis-angle, gripper), so a
   checkpoint's state statistics mean the same kind of quantity. The TCP
   pose is in the world frame (robot base + ``(-0.615, 0, 0)``).
2. :func:`to_policy_fields` -- base camera -> ``base_0_rgb``, hand camera ->
   ``left_wrist_0_rgb`` (when the env has one); ``right_wrist_0_rgb`` is left
   out (a black image with mask False, pi0's convention). ManiSkill renders
   upright: no flip.

Resize-with-pad, [-1, 1] scaling and normalisation are the policy's
preprocessing, not the adapter's.

Action (control mode ``pd_ee_delta_pose``, 7-d, all in ``[-1, 1]``):
``[dx, dy, dz]`` TCP translation in the world-aligned robot-base frame,
1.0 = 0.1 m per control step (20 Hz); ``[rx, ry, rz]`` an axis-angle delta
rotation about those axes, 1.0 = 0.1 rad (measured on mani-skill 3.0.1: the
TCP turns by ``-r``); gripper ``+1`` open, ``-1`` closed (the opposite sign of
LIBERO's gripper). The adapter keeps the first 7 policy dims and clips them
to ``[-1, 1]``, nothing else: the scripted experts' actions are exactly what
the policy learns, as a spec's ``scripted_expert`` requires.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ript_core import (
    ComposedActionAdapter,
    ComposedObservationAdapter,
    clip_actions,
    slice_action_dims,
)

ACTION_DIM = 7
CAMERA_SLOTS = {"base_0_rgb": "base", "left_wrist_0_rgb": "hand"}
POLICY_STATE_DIM = 8
ACTION_LOW = -np.ones(ACTION_DIM, dtype=np.float32)
ACTION_HIGH = np.ones(ACTION_DIM, dtype=np.float32)
RAW_STATE_DIM = 16  # qpos (9), tcp_pos (3), tcp_quat wxyz (4): ript_maniskill.env.STATE_LAYOUT


def quat_wxyz_to_axisangle(quat: np.ndarray) -> np.ndarray:
    """Axis-angle (float64, 3) of a unit quaternion ``(w, x, y, z)``.

    The quaternion is first put in the ``w >= 0`` hemisphere, so the angle is
    in ``[0, pi]`` and ``q`` and ``-q`` (the same rotation, both of which
    SAPIEN may report) give the same state; identity gives zeros.
    """
    q = np.asarray(quat, dtype=np.float64).reshape(4)
    if q[0] < 0:
        q = -q
    w = min(float(q[0]), 1.0)
    den = math.sqrt(max(1.0 - w * w, 0.0))
    if den < 1e-12:
        return np.zeros(3, dtype=np.float64)
    return q[1:] * (2.0 * math.acos(w)) / den


def compose_state(obs: dict[str, Any]) -> dict[str, Any]:
    raw = np.asarray(obs["state"], dtype=np.float64)
    if raw.shape != (RAW_STATE_DIM,):
        raise ValueError(
            f"ManiSkill observation state has shape {raw.shape}, expected ({RAW_STATE_DIM},) = "
            "qpos (9), tcp_pos (3), tcp_quat wxyz (4); is this observation from the maniskill "
            "backend?"
        )
    state = np.concatenate([raw[9:12], quat_wxyz_to_axisangle(raw[12:16]), raw[7:9]])
    return {**obs, "state": state}


def to_policy_fields(obs: dict[str, Any]) -> dict[str, Any]:
    images = {
        slot: obs["images"][cam] for slot, cam in CAMERA_SLOTS.items() if cam in obs["images"]
    }
    return {"images": images, "state": obs["state"], "prompt": obs["instruction"]}


def make_adapters() -> tuple[ComposedObservationAdapter, ComposedActionAdapter]:
    obs_adapter = ComposedObservationAdapter([compose_state, to_policy_fields])
    act_adapter = ComposedActionAdapter(
        [slice_action_dims(ACTION_DIM), clip_actions(ACTION_LOW, ACTION_HIGH)]
    )
    return obs_adapter, act_adapter
