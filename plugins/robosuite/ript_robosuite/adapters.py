"""robosuite env <-> PI0 policy translators.

Observation:

1. :func:`flip_upright` -- robosuite renders in OpenGL row order (bottom row
   first): both cameras' rows are reversed, which makes them upright and not
   mirrored (checked in the tests against a known scene: an object's
   projected pixel through the camera matrix). Unlike LIBERO's adapter there is
   no left-right flip: openpi's 180-degree turn matches how the LIBERO data
   was recorded, not how a camera sees;
2. :func:`compose_state` -- 8-d state ``eef_pos (3) + axis-angle of the eef
   quaternion (3) + gripper joint positions (2)``, the LIBERO backend's layout
   (``ript_core.robosuite_state``);
3. :func:`to_policy_fields` -- agent view -> ``base_0_rgb``, wrist ->
   ``left_wrist_0_rgb`` (when the env has one); ``right_wrist_0_rgb`` is left
   out (a black image with mask False, pi0's convention).

Resize, [-1, 1] scaling and normalisation are the policy's preprocessing.

Action (OSC_POSE, delta, 7-d, all in ``[-1, 1]``): ``[dx, dy, dz]`` eef
translation in the world frame, 1.0 = 5 cm per control step (20 Hz);
``[rx, ry, rz]`` an axis-angle delta rotation in the world frame, 1.0 =
0.5 rad; gripper ``-1`` open, ``+1`` close (LIBERO's convention). The adapter
keeps the first 7 policy dims and clips them to ``[-1, 1]``, nothing else:
the scripted experts' actions are exactly what the policy learns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ript_core import (
    ComposedActionAdapter,
    ComposedObservationAdapter,
    clip_actions,
    robosuite_state,
    slice_action_dims,
)
from ript_robosuite.catalogue import ACTION_DIM

CAMERA_SLOTS = {"base_0_rgb": "agentview", "left_wrist_0_rgb": "wrist"}
ACTION_LOW = -np.ones(ACTION_DIM, dtype=np.float32)
ACTION_HIGH = np.ones(ACTION_DIM, dtype=np.float32)


def flip_upright(obs: dict[str, Any]) -> dict[str, Any]:
    images = {cam: np.ascontiguousarray(img[::-1]) for cam, img in obs["images"].items()}
    return {**obs, "images": images}


def compose_state(obs: dict[str, Any]) -> dict[str, Any]:
    return {**obs, "state": robosuite_state.policy_state(obs["state"], "robosuite")}


def to_policy_fields(obs: dict[str, Any]) -> dict[str, Any]:
    images = {
        slot: obs["images"][cam] for slot, cam in CAMERA_SLOTS.items() if cam in obs["images"]
    }
    return {"images": images, "state": obs["state"], "prompt": obs["instruction"]}


def make_adapters() -> tuple[ComposedObservationAdapter, ComposedActionAdapter]:
    obs_adapter = ComposedObservationAdapter([flip_upright, compose_state, to_policy_fields])
    act_adapter = ComposedActionAdapter(
        [slice_action_dims(ACTION_DIM), clip_actions(ACTION_LOW, ACTION_HIGH)]
    )
    return obs_adapter, act_adapter
