"""LIBERO env <-> PI0 policy translators, as the reference pipeline does it.

Observation (openpi ``examples/libero/main.py`` + ``LiberoInputs``):

1. :func:`rotate_180` -- both cameras turned 180 degrees (robosuite renders
   upside down; the pi0 LIBERO training frames are upright);
2. :func:`compose_state` -- 8-d state ``eef_pos (3) + axis-angle of the eef
   quaternion (3) + gripper joint positions (2)`` (``ript_core.robosuite_state``,
   shared with the robosuite backend);
3. :func:`to_policy_fields` -- agent view -> ``base_0_rgb``, wrist ->
   ``left_wrist_0_rgb``; ``right_wrist_0_rgb`` is left out, which the policy
   turns into a black image with mask False (pi0's convention).

The state stays float64 (openpi's client sends it so): the policy then
normalises it to exactly openpi's float32 model input.

Resize-with-pad to the model's size (224 for pi0) with the checkpoint's
resampler (Pillow for openpi checkpoints), [-1, 1] scaling and the
checkpoint's normalisation happen in the policy's preprocessing
(``ript_core.policy.preprocess``), not here: doing them twice would blur the
image and double-normalise the state.

Action: the policy un-normalises its chunk with the checkpoint's stats and
applies the checkpoint's own output transforms -- for openpi ``pi0_libero``
the extra delta transform ``action[:6] += state[:6]`` -- in
``PI0Policy.postprocess`` (checkpoint data, not plugin code);
:func:`make_adapters`' action adapter then keeps LIBERO's 7 dims (delta eef
position, delta axis-angle, gripper with -1 open / +1 close, passed through
as openpi does -- no sign flip, no binarising) and clips them to LIBERO's
action space ``[-1, 1]`` (robosuite clips there too, so the env sees what
openpi's unclipped actions give it).
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
from ript_libero.catalogue import ACTION_DIM

CAMERA_SLOTS = {"base_0_rgb": "agentview", "left_wrist_0_rgb": "wrist"}
POLICY_STATE_DIM = robosuite_state.POLICY_DIM
quat2axisangle = robosuite_state.quat2axisangle  # where the tests and older code look
ACTION_LOW = -np.ones(ACTION_DIM, dtype=np.float32)
ACTION_HIGH = np.ones(ACTION_DIM, dtype=np.float32)


def rotate_180(obs: dict[str, Any]) -> dict[str, Any]:
    images = {cam: np.ascontiguousarray(img[::-1, ::-1]) for cam, img in obs["images"].items()}
    return {**obs, "images": images}


def compose_state(obs: dict[str, Any]) -> dict[str, Any]:
    return {**obs, "state": robosuite_state.policy_state(obs["state"], "LIBERO")}


def to_policy_fields(obs: dict[str, Any]) -> dict[str, Any]:
    return {
        "images": {slot: obs["images"][cam] for slot, cam in CAMERA_SLOTS.items()},
        "state": obs["state"],
        "prompt": obs["instruction"],
    }


def make_adapters() -> tuple[ComposedObservationAdapter, ComposedActionAdapter]:
    obs_adapter = ComposedObservationAdapter([rotate_180, compose_state, to_policy_fields])
    act_adapter = ComposedActionAdapter(
        [slice_action_dims(ACTION_DIM), clip_actions(ACTION_LOW, ACTION_HIGH)]
    )
    return obs_adapter, act_adapter
