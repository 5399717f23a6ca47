"""The observation and action adapters against values computed here, from
the raw simulator state (MuJoCo's data arrays), not from the env's obs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ript_core import get_registry
from tests.plugins.libero.conftest import ENV_OPTIONS, TASK, require_libero

require_libero()

from ript_libero.adapters import quat2axisangle  # noqa: E402
from ript_libero.env import to_observation  # noqa: E402


def rodrigues(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of the axis-angle vector ``v``."""
    angle = float(np.linalg.norm(v))
    if angle == 0.0:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def axisangle_atan2(wxyz: np.ndarray) -> np.ndarray:
    """The same convention as openpi (angle = 2 acos w in [0, 2 pi]), another formula."""
    w, xyz = wxyz[0], wxyz[1:]
    s = np.linalg.norm(xyz)
    return np.zeros(3) if s < 1e-12 else xyz / s * 2.0 * math.atan2(s, w)


@pytest.fixture(scope="module")
def moved(libero_host):
    """Observations and raw MuJoCo quantities after reset and after a few moves."""
    env = libero_host.env.unwrapped  # the LiberoEnv under the worker's settle wrapper

    def raw():
        # a (hard) reset rebuilds the simulator: look everything up afresh
        robot, sim = env.robosuite_env.robots[0], env.sim
        body = sim.model.body_name2id(robot.robot_model.eef_name)
        return {
            "pos": np.array(sim.data.site_xpos[robot.eef_site_id]),
            "xmat": np.array(sim.data.body_xmat[body]).reshape(3, 3),
            "wxyz": np.array(sim.data.body_xquat[body]),
            "gripper": np.array(sim.data.qpos[robot._ref_gripper_joint_pos_indexes]),
        }

    obs, _ = env.reset(seed=1, options={"init_state": 3})
    out = [(obs, raw(), env.render())]  # after reset the observables are the current state
    for action in ([0.5, -0.4, 0.3, 0.6, -0.5, 0.7, 1.0], [0.2, 0.5, -0.3, -0.8, 0.4, -0.6, 1.0]):
        for _ in range(3):
            stepped, *_ = env.step(action)
        # robosuite samples proprio at the first physics substep of a step; make it
        # sample the current state so that it can be compared with MuJoCo's arrays
        fresh = env.robosuite_env._get_observations(force_update=True)
        obs = to_observation(fresh, env.instruction)
        assert np.abs(obs["state"][:3] - stepped["state"][:3]).max() < 0.02  # a few ms apart
        out.append((obs, raw(), np.rot90(fresh["agentview_image"], 2)))
    return out


def test_images_are_rotated_180_degrees_into_the_policy_slots(moved):
    obs_adapter, _ = get_registry().default_adapters("libero", TASK, ENV_OPTIONS)
    for obs, _, frame in moved:
        inp = obs_adapter(obs)
        assert set(inp.images) == {"base_0_rgb", "left_wrist_0_rgb"}  # right wrist: masked
        for slot, cam in (("base_0_rgb", "agentview"), ("left_wrist_0_rgb", "wrist")):
            raw, img = obs["images"][cam], inp.images[slot]
            np.testing.assert_array_equal(img, np.rot90(raw, 2))
            h, w, _ = raw.shape
            for i, j in ((0, 0), (3, 50), (h - 1, 7)):
                np.testing.assert_array_equal(img[i, j], raw[h - 1 - i, w - 1 - j])
            assert not np.array_equal(img, raw)  # the scene is not symmetric: a real change
        np.testing.assert_array_equal(frame, inp.images["base_0_rgb"])  # videos are upright


def test_state_is_eef_pos_axis_angle_and_gripper_from_the_simulator(moved):
    obs_adapter, _ = get_registry().default_adapters("libero", TASK, ENV_OPTIONS)
    states = []
    for obs, raw, _ in moved:
        state = obs_adapter(obs).state
        # float64 as openpi's client composes it: normalising from float64 is bit-exact
        assert state.dtype == np.float64 and state.shape == (8,)
        np.testing.assert_allclose(state[:3], raw["pos"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(state[3:6], axisangle_atan2(raw["wxyz"]), rtol=0, atol=1e-5)
        # and it is the rotation the simulator has (from its rotation matrix)
        np.testing.assert_allclose(rodrigues(state[3:6].astype(np.float64)), raw["xmat"], atol=1e-5)
        np.testing.assert_allclose(state[6:8], raw["gripper"], rtol=0, atol=1e-6)
        states.append(state)
    # the moves changed position, orientation and the gripper (closed with +1)
    assert np.abs(states[-1][:3] - states[0][:3]).min() > 1e-3
    assert np.abs(states[-1][3:6] - states[0][3:6]).max() > 1e-2
    assert states[-1][6] < states[0][6] - 1e-3


def test_quat2axisangle_conventions():
    s45, c45 = math.sin(math.pi / 4), math.cos(math.pi / 4)
    np.testing.assert_allclose(quat2axisangle([0, 0, s45, c45]), [0, 0, math.pi / 2])
    np.testing.assert_allclose(quat2axisangle([1, 0, 0, 0]), [math.pi, 0, 0], atol=1e-15)
    # w < 0 is not flipped to the other hemisphere: the angle goes above pi
    angle = 2 * math.acos(-0.8)
    np.testing.assert_allclose(quat2axisangle([0, 0, 0.6, -0.8]), [0, 0, angle])
    assert angle > math.pi
    for identity in ([0, 0, 0, 1], [0, 0, 0, -1], [0, 0, 0, 1 + 1e-12]):
        np.testing.assert_array_equal(quat2axisangle(identity), [0, 0, 0])


def test_action_adapter_keeps_seven_dims_clipped_without_gripper_changes():
    _, act_adapter = get_registry().default_adapters("libero", TASK, ENV_OPTIONS)
    chunk = np.zeros((3, 32), dtype=np.float32)
    chunk[:, :7] = [
        [0.1, -0.2, 0.3, -0.4, 0.5, -0.6, -0.3],
        [1.7, -2.5, 0.99, 0.0, 3.0, -1.01, 0.4],
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0],
    ]
    chunk[:, 7:] = 9.0  # padding dims of the policy, dropped
    expected = np.array(
        [
            [0.1, -0.2, 0.3, -0.4, 0.5, -0.6, -0.3],
            [1.0, -1.0, 0.99, 0.0, 1.0, -1.0, 0.4],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        ],
        dtype=np.float32,
    )
    out = act_adapter(chunk)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match="policy gave 6 action dims, the env needs 7"):
        act_adapter(np.zeros((2, 6)))
