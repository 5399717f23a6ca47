"""Adapters checked against raw simulator values read in the test."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ript_core import get_registry
from tests.plugins.maniskill.conftest import ENV_OPTIONS, TASK, require_maniskill

require_maniskill()

from ript_maniskill import adapters  # noqa: E402


def test_policy_input_equals_the_raw_simulator_values(maniskill_env):
    obs_adapter, _ = get_registry().default_adapters("maniskill", TASK, ENV_OPTIONS)
    obs, _ = maniskill_env.reset(options={"init_state": 5})
    for a in np.random.default_rng(1).uniform(-1, 1, size=(3, 7)):
        obs, *_ = maniskill_env.step(a)  # off the reset pose: a tilted, turned gripper
    x = obs_adapter(obs)

    sim = maniskill_env.task_env
    tcp = sim.agent.tcp.pose.raw_pose.numpy()[0].astype(np.float64)
    qpos = sim.agent.robot.get_qpos().numpy()[0].astype(np.float64)
    rotvec = Rotation.from_quat(tcp[3:], scalar_first=True).as_rotvec()
    expected = np.concatenate([tcp[:3], rotvec, qpos[7:9]])
    np.testing.assert_allclose(x.state, expected.astype(np.float32), rtol=0, atol=1e-6)
    assert x.state.shape == (adapters.POLICY_STATE_DIM,)

    sensors = maniskill_env._raw["sensor_data"]
    assert set(x.images) == {"base_0_rgb", "left_wrist_0_rgb"}
    np.testing.assert_array_equal(x.images["base_0_rgb"], sensors["base_camera"]["rgb"][0].numpy())
    np.testing.assert_array_equal(
        x.images["left_wrist_0_rgb"], sensors["hand_camera"]["rgb"][0].numpy()
    )
    assert x.prompt == "pick up the red cube and move it to the green goal"


def test_axis_angle_is_the_same_for_q_and_minus_q():
    for rotvec in ([0.0, 0.0, 0.0], [0.3, -1.2, 2.0], [np.pi - 1e-3, 0.0, 0.0]):
        q = Rotation.from_rotvec(rotvec).as_quat(scalar_first=True)
        np.testing.assert_allclose(adapters.quat_wxyz_to_axisangle(q), rotvec, atol=1e-9)
        np.testing.assert_allclose(adapters.quat_wxyz_to_axisangle(-q), rotvec, atol=1e-9)


def test_state_adapter_rejects_another_backends_state():
    with pytest.raises(ValueError, match=r"expected \(16,\)"):
        adapters.compose_state({"state": np.zeros(9)})


def test_no_hand_camera_leaves_the_wrist_slot_out():
    out = adapters.to_policy_fields(
        {
            "images": {"base": np.zeros((4, 4, 3), np.uint8)},
            "state": np.zeros(8),
            "instruction": "x",
        }
    )
    assert set(out["images"]) == {"base_0_rgb"}


def test_action_adapter_keeps_seven_dims_and_clips_to_the_action_space():
    _, act = get_registry().default_adapters("maniskill", TASK, {})
    chunk = np.array([[0.5, -2.0, 3.0, 0.1, -0.2, 1.5, -1.5, 9.0, 9.0]], dtype=np.float32)
    out = act(chunk)
    np.testing.assert_array_equal(
        out, np.array([[0.5, -1.0, 1.0, 0.1, -0.2, 1.0, -1.0]], dtype=np.float32)
    )
    with pytest.raises(ValueError, match="the env needs 7"):
        act(np.zeros((1, 6), np.float32))
    with pytest.raises(ValueError, match="unknown env options"):
        get_registry().default_adapters("maniskill", TASK, {"size": 3})
