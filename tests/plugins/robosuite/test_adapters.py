"""The observation and action adapters against values computed here, from
the raw simulator (MuJoCo's data arrays and camera model), not from the
env's observation."""

from __future__ import annotations

import math

import numpy as np

from ript_core import get_registry
from tests.plugins.robosuite.conftest import ENV_OPTIONS, TASK, require_robosuite

require_robosuite()


def rodrigues(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of the axis-angle vector ``v``."""
    angle = float(np.linalg.norm(v))
    if angle == 0.0:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


def named(sim, kind: str, count: int, needle: str) -> list[int]:
    """Ids of the model's ``kind`` (site, joint, body) whose name contains ``needle``."""
    name_of = getattr(sim.model, f"{kind}_id2name")
    return [i for i in range(count) if needle in (name_of(i) or "")]


def grip_site(sim) -> int:
    """The site between the finger tips (robosuite's eef site)."""
    (site,) = [
        i
        for i in named(sim, "site", sim.model.nsite, "grip_site")
        if "cylinder" not in sim.model.site_id2name(i)
    ]
    return site


def project(sim, camera: str, point: np.ndarray, size: int) -> tuple[float, float]:
    """(row, col) of a world point in an upright ``size`` px image of ``camera``:
    MuJoCo's pinhole camera looks down its frame's -z, x right, y up."""
    cam = sim.model.camera_name2id(camera)
    rel = np.asarray(sim.data.cam_xmat[cam]).reshape(3, 3).T @ (point - sim.data.cam_xpos[cam])
    f = (size / 2) / math.tan(math.radians(sim.model.cam_fovy[cam]) / 2)
    return size / 2 - f * rel[1] / -rel[2] - 0.5, size / 2 + f * rel[0] / -rel[2] - 0.5


def red_centroid(image: np.ndarray) -> np.ndarray:
    img = image.astype(int)
    mask = (img[..., 0] > 60) & (img[..., 0] > 2 * img[..., 1]) & (img[..., 0] > 2 * img[..., 2])
    assert mask.sum() >= 2, "the red cube is not in view"
    return np.argwhere(mask).mean(axis=0)


def test_images_come_out_upright_and_unmirrored(robosuite_env):
    env = robosuite_env
    env.reset(seed=0, options={"init_state": 0})
    rs = env.robosuite_env
    # move the cube off the image centre (to the robot's left, towards it), so
    # that a flip in either direction would move it far
    joint = rs.cube.joints[0]
    qpos = rs.sim.data.get_joint_qpos(joint).copy()
    qpos[:2] += [-0.12, 0.2]
    rs.sim.data.set_joint_qpos(joint, qpos)
    rs.sim.forward()
    obs, *_ = env.step([0, 0, 0, 0, 0, 0, -1])  # renders the moved scene
    size = env.image_size
    cube = np.array(rs.sim.data.body_xpos[rs.sim.model.body_name2id(rs.cube.root_body)])
    expected = np.array(project(rs.sim, "agentview", cube, size))

    obs_adapter, _ = get_registry().default_adapters("robosuite", TASK, ENV_OPTIONS)
    upright = obs_adapter(obs).images["base_0_rgb"]
    found = red_centroid(upright)
    assert np.abs(found - expected).max() < 1.5, (found, expected)
    assert abs(expected[0] - (size - 1) / 2) > 3 and abs(expected[1] - (size - 1) / 2) > 3
    # the env's raw image is robosuite's OpenGL row order: the same scene upside down
    np.testing.assert_array_equal(obs["images"]["agentview"][::-1], upright)
    np.testing.assert_array_equal(
        obs["images"]["wrist"][::-1], obs_adapter(obs).images["left_wrist_0_rgb"]
    )
    np.testing.assert_array_equal(env.render(), upright)


def test_state_is_eef_position_axis_angle_and_finger_joints(robosuite_env):
    env = robosuite_env
    obs, _ = env.reset(seed=0, options={"init_state": 3})
    sim = env.sim
    model = sim.model
    obs_adapter, _ = get_registry().default_adapters("robosuite", TASK, ENV_OPTIONS)
    state = obs_adapter(obs).state
    assert state.shape == (8,) and state.dtype == np.float64

    np.testing.assert_array_equal(state[:3], sim.data.site_xpos[grip_site(sim)])
    # the orientation is the hand body's: axis-angle -> matrix gives its xmat back
    (hand,) = named(sim, "body", model.nbody, "right_hand")
    np.testing.assert_allclose(
        rodrigues(state[3:6]), np.asarray(sim.data.body_xmat[hand]).reshape(3, 3), atol=1e-6
    )
    fingers = named(sim, "joint", model.njnt, "finger_joint")
    assert len(fingers) == 2
    np.testing.assert_array_equal(state[6:], [sim.data.qpos[model.jnt_qposadr[j]] for j in fingers])


def test_action_adapter_slices_and_clips_and_the_env_moves_as_documented(robosuite_env):
    env = robosuite_env
    _, act_adapter = get_registry().default_adapters("robosuite", TASK, ENV_OPTIONS)
    chunk = np.zeros((3, 32), dtype=np.float32)
    chunk[:, 0] = 4.0  # +x, far beyond the action space
    chunk[:, 6] = 7.0  # close, beyond it
    chunk[:, 7:] = 9.0  # padding dims the env does not have
    actions = act_adapter(chunk)
    assert actions.shape == (3, 7)
    np.testing.assert_array_equal(actions[0], [1, 0, 0, 0, 0, 0, 1])
    assert all(env.action_space.contains(a) for a in actions)

    obs, _ = env.reset(seed=0, options={"init_state": 1})
    start = env.sim.data.site_xpos[grip_site(env.sim)].copy()
    opening = obs["state"][7] - obs["state"][8]
    for a in actions:
        obs, *_ = env.step(a)
    moved = obs["state"][:3] - start
    # +1 in x is up to 5 cm per step in the world frame: +x, little else
    assert 0.02 < moved[0] < 0.15 and np.abs(moved[1:]).max() < 0.3 * moved[0]
    assert obs["state"][7] - obs["state"][8] < opening  # +1 closes the gripper
