"""The real simulator: the backend contract (``check_backend``) on every
task, what the init state decides, bad actions, the step budget."""

from __future__ import annotations

import numpy as np
import pytest

from ript_core import check_backend, get_registry
from tests.plugins.backend_contract import check_unread_observations
from tests.plugins.robosuite.conftest import ENV_OPTIONS, IMAGE_SIZE, TASK, require_robosuite

require_robosuite()

from ript_robosuite.catalogue import TASKS  # noqa: E402
from ript_robosuite.env import RobosuiteEnv  # noqa: E402


def test_lift_keeps_the_backend_contract(robosuite_env):
    # reset reproducible after any history (another init state, steps, the
    # global RNG moved), fixed actions -> identical trajectories, adapters, options
    check_backend("robosuite", TASK, ENV_OPTIONS, env=robosuite_env, init_states=(2, 3), seed=7)


@pytest.mark.parametrize("task", [t for t in TASKS if t != TASK])
def test_every_other_task_keeps_the_backend_contract(task):
    # one camera of 16 px: the contract does not depend on the image size,
    # and each step renders (the cost on CPU)
    options = {"image_size": 16, "wrist_camera": False}
    env = get_registry().make_env("robosuite", task, options)
    try:
        check_backend("robosuite", task, options, env=env.unwrapped, init_states=(1, 5), seed=3)
    finally:
        env.close()


def test_the_init_state_decides_the_scene_and_the_seed_does_not(robosuite_env):
    env = robosuite_env
    env.reset(seed=0, options={"init_state": 2})
    cube = env.raw_observation["cube_pos"].copy()
    first = env._obs()
    env.reset(seed=99, options={"init_state": 2})
    np.testing.assert_array_equal(env.raw_observation["cube_pos"], cube)
    np.testing.assert_array_equal(env._obs()["images"]["agentview"], first["images"]["agentview"])
    # other init states place the cube elsewhere (robosuite draws within +-3 cm)
    others = []
    for i in (3, 4, 5):
        env.reset(seed=0, options={"init_state": i})
        others.append(env.raw_observation["cube_pos"][:2])
    assert min(np.abs(o - cube[:2]).max() for o in others) > 1e-4


def test_step_rejects_bad_actions_and_truncates_at_settle_plus_budget(robosuite_env):
    env = robosuite_env
    with pytest.raises(ValueError, match="7-d actions"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="non-finite"):
        env.step([0, 0, np.nan, 0, 0, 0, -1])
    with pytest.raises(ValueError, match=r"init_state 1000 out of range \[0, 1000\)"):
        env.reset(seed=0, options={"init_state": 1000})
    assert env.step_limit == 5 + 80  # settle steps + Lift's policy steps
    obs, info = env.reset(seed=0, options={"init_state": 0})
    assert obs["images"]["agentview"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert info == {"success": False, "init_state": 0}
    env._t = env.step_limit - 2  # jump to the end of the budget instead of stepping 85 times
    assert env.step([0, 0, 0, 0, 0, 0, -1])[3] is False
    obs, reward, terminated, truncated, info = env.step([0, 0, 0, 0, 0, 0, -1])
    assert (truncated, terminated, reward, info["success"]) == (True, False, 0.0, False)


def test_success_is_robosuites_own_check(robosuite_env):
    env = robosuite_env
    env.reset(seed=0, options={"init_state": 0})
    rs = env.robosuite_env
    # lift the cube by hand (teleport it 10 cm up): robosuite's check flips, so does ours
    joint = rs.cube.joints[0]
    qpos = rs.sim.data.get_joint_qpos(joint).copy()
    qpos[2] += 0.1
    rs.sim.data.set_joint_qpos(joint, qpos)
    rs.sim.forward()
    assert rs._check_success() and env.success()
    _, reward, terminated, _, info = env.step([0, 0, 0, 0, 0, 0, -1])
    assert info["success"] == terminated == bool(rs._check_success())


def test_without_rendering_there_are_no_cameras():
    env = RobosuiteEnv(TASK, render=False)
    try:
        obs, _ = env.reset(seed=0, options={"init_state": 0})
        assert obs["images"] == {} and obs["state"].shape == (9,)
    finally:
        env.close()


def test_another_env_in_the_process_does_not_spoil_this_ones_frames(robosuite_env):
    # robosuite renders into whichever GL context is current; the env makes its own current
    env = robosuite_env
    before, _ = env.reset(seed=0, options={"init_state": 6})
    other = RobosuiteEnv("Door", image_size=16, wrist_camera=False)
    other.reset(seed=0, options={"init_state": 0})
    other.close()
    after, _ = env.reset(seed=0, options={"init_state": 6})
    for cam, image in before["images"].items():
        np.testing.assert_array_equal(after["images"][cam], image)


def test_a_skipped_observation_keeps_old_images_and_the_next_renders_as_usual(robosuite_env):
    check_unread_observations(robosuite_env, action_dim=7)
