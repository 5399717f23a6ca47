"""The real simulator: the backend contract (``check_backend``), what the
init state and the seed each decide, bad actions, the step budget."""

from __future__ import annotations

import numpy as np
import pytest

from ript_core import check_backend
from tests.plugins.backend_contract import check_unread_observations
from tests.plugins.libero.conftest import ENV_OPTIONS, IMAGE_SIZE, TASK, require_libero

require_libero()

# a fixed, non-trivial action sequence: arm motion in all 6 dims, gripper closing
ACTIONS = np.random.default_rng(0).uniform(-1.0, 1.0, (4, 7))
ACTIONS[:, 6] = [-1.0, -1.0, 1.0, 1.0]


def run(env, init_state: int, seed: int):
    obs, info = env.reset(seed=seed, options={"init_state": init_state})
    traj = [(obs, 0.0, False, False, info["success"])]
    for action in ACTIONS:
        obs, reward, terminated, truncated, info = env.step(action)
        traj.append((obs, reward, terminated, truncated, info["success"]))
    return traj


def test_keeps_the_backend_contract(libero_env):
    # reset reproducible after any history (another seed, another init state,
    # the global RNG scrambled: LIBERO's fixtures would land elsewhere), fixed
    # actions -> identical trajectories, observations, adapters, options
    check_backend("libero", TASK, ENV_OPTIONS, env=libero_env, init_states=(2, 3), seed=7)


def test_the_init_state_fixes_the_robot_and_the_seed_the_fixtures(libero_env):
    first = run(libero_env, init_state=2, seed=7)
    assert first[0][0]["images"]["agentview"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert first[0][0]["state"].shape == (9,)
    # the actions really move the arm (the contract's equal trajectories are not vacuous)
    assert np.abs(first[-1][0]["state"][:3] - first[0][0]["state"][:3]).max() > 1e-3

    # The registered init state fixes robot and objects exactly; the seed decides
    # what LIBERO draws at reset (fixture placement), which the images show.
    other = run(libero_env, init_state=2, seed=8)
    np.testing.assert_array_equal(other[0][0]["state"], first[0][0]["state"])
    diff = np.abs(
        other[0][0]["images"]["agentview"].astype(int) - first[0][0]["images"]["agentview"]
    )
    assert diff.max() > 20


def test_step_rejects_bad_actions_and_truncates_at_settle_plus_budget(libero_env):
    env = libero_env
    with pytest.raises(ValueError, match="7-d actions"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="non-finite"):
        env.step([0, 0, np.nan, 0, 0, 0, -1])
    with pytest.raises(ValueError, match=r"init_state 50 out of range \[0, 50\)"):
        env.reset(seed=0, options={"init_state": 50})
    assert env.step_limit == 10 + 300  # libero_goal: openpi's 300 policy steps + 10 settle
    env.reset(seed=0, options={"init_state": 0})
    env._t = env.step_limit - 2  # jump to the end of the budget instead of stepping 300 times
    assert env.step([0, 0, 0, 0, 0, 0, -1])[3] is False
    obs, reward, terminated, truncated, info = env.step([0, 0, 0, 0, 0, 0, -1])
    assert (truncated, terminated, reward, info["success"]) == (True, False, 0.0, False)


def test_a_skipped_observation_keeps_old_images_and_the_next_renders_as_usual(libero_env):
    check_unread_observations(libero_env, action_dim=7)
