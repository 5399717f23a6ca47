"""Robot env <-> PI0 policy translators.

Observation: the robot's cameras, in the order its driver lists them, fill
PI0's slots ``base_0_rgb``, ``left_wrist_0_rgb``, ``right_wrist_0_rgb``
(a camera list ordered base first, wrist next: the twin's one ``front``
camera is the base); the state is the robot's state vector as is; the prompt
is the task's instruction. Action: the policy's first ``action_dim`` dims,
clipped to the configured clamps (the safety layer clamps again: the adapter
keeps the policy's targets inside what the robot will take, the safety layer
guarantees it whatever the caller).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ript_core import (
    ComposedActionAdapter,
    ComposedObservationAdapter,
    clip_actions,
    slice_action_dims,
)
from ript_real_robot.config import RobotConfig

SLOTS = ("base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb")


def to_policy_fields(obs: dict[str, Any]) -> dict[str, Any]:
    images = dict(zip(SLOTS, obs["images"].values(), strict=False))
    return {"images": images, "state": obs["state"], "prompt": obs["instruction"]}


def make_adapters(cfg: RobotConfig) -> tuple[ComposedObservationAdapter, ComposedActionAdapter]:
    low = np.asarray(cfg.safety.action_low, np.float32)
    high = np.asarray(cfg.safety.action_high, np.float32)
    return ComposedObservationAdapter([to_policy_fields]), ComposedActionAdapter(
        [slice_action_dims(len(low)), clip_actions(low, high)]
    )
