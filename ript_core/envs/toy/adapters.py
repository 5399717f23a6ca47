"""Toy env <-> PI0 policy translators."""

from __future__ import annotations

import numpy as np

from ript_core.envs.interfaces import (
    ComposedActionAdapter,
    ComposedObservationAdapter,
    clip_actions,
    slice_action_dims,
)

# Which env camera feeds which PI0 camera slot.
CAMERA_SLOTS = {"base_0_rgb": "agentview", "left_wrist_0_rgb": "wrist"}


def to_policy_fields(obs: dict) -> dict:
    return {
        "images": {slot: obs["images"][cam] for slot, cam in CAMERA_SLOTS.items()},
        "state": obs["state"],
        "prompt": obs["instruction"],
    }


def make_adapters() -> tuple[ComposedObservationAdapter, ComposedActionAdapter]:
    obs_adapter = ComposedObservationAdapter([to_policy_fields])
    act_adapter = ComposedActionAdapter(
        [slice_action_dims(3), clip_actions(-np.ones(3), np.ones(3))]
    )
    return obs_adapter, act_adapter
