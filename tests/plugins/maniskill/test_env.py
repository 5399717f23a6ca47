"""The real ManiSkill env: the backend contract (``check_backend``), its
observations, seed-indexed init states, option checks, the missing-Vulkan error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ript_core import ObservationError, check_backend, validate_observation
from tests.plugins.backend_contract import check_unread_observations
from tests.plugins.maniskill.conftest import ENV_OPTIONS, IMAGE_SIZE, TASK, require_maniskill

require_maniskill()

from ript_maniskill import env as ms_env  # noqa: E402

ACTIONS = np.random.default_rng(5).uniform(-1, 1, size=(6, 7)).astype(np.float32)


def rollout(env, init_state, seed=0):
    obs, info = env.reset(seed=seed, options={"init_state": init_state})
    out = [(obs, info)]
    for a in ACTIONS:
        obs, reward, term, trunc, info = env.step(a)
        out.append((obs, info))
    return out


def assert_same_obs(a, b):
    assert a["images"].keys() == b["images"].keys()
    for cam in a["images"]:
        np.testing.assert_array_equal(a["images"][cam], b["images"][cam])
    np.testing.assert_array_equal(a["state"], b["state"])
    assert a["instruction"] == b["instruction"]


def test_observation_keeps_the_contract(maniskill_env):
    obs, info = maniskill_env.reset(seed=0, options={"init_state": 3})
    validate_observation(obs, "maniskill")
    assert set(obs["images"]) == {"base", "hand"}
    for img in obs["images"].values():
        assert img.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and img.dtype == np.uint8
        assert img.std() > 5  # a rendered scene, not a blank frame
    assert obs["state"].shape == (ms_env.STATE_DIM,) and obs["state"].dtype == np.float64
    assert obs["instruction"] == "pick up the red cube and move it to the green goal"
    assert info == {"success": False, "init_state": 3}
    assert maniskill_env.observation_space["images"]["base"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)


def test_keeps_the_backend_contract(maniskill_env):
    # reset to an init state after another history gives identical observations,
    # fixed actions identical trajectories (infos included), adapters, options, expert
    check_backend("maniskill", TASK, ENV_OPTIONS, env=maniskill_env, init_states=(7, 2))


def test_the_init_state_not_the_seed_decides_the_layout(maniskill_env):
    first, _ = maniskill_env.reset(seed=0, options={"init_state": 7})
    # the seed argument does not move the layout (only gymnasium's np_random)
    other_seed, _ = maniskill_env.reset(seed=123, options={"init_state": 7})
    assert_same_obs(first, other_seed)
    # ... and another init state is another layout
    other, _ = maniskill_env.reset(seed=0, options={"init_state": 8})
    cube_7 = _cube_after_reset(maniskill_env, 7)
    cube_8 = _cube_after_reset(maniskill_env, 8)
    assert np.abs(cube_7 - cube_8).max() > 1e-3
    assert not np.array_equal(first["images"]["base"], other["images"]["base"])


def _cube_after_reset(env, i):
    env.reset(options={"init_state": i})
    return env.task_env.cube.pose.p.numpy()[0].copy()


def test_fixed_actions_move_the_arm(maniskill_env):
    a = rollout(maniskill_env, 4)
    # the contract's identical trajectories are not vacuous: the actions move the arm
    assert np.abs(a[-1][0]["state"][9:12] - a[0][0]["state"][9:12]).max() > 0.01


def test_init_state_seeds_are_distinct_and_in_range():
    seeds = {ms_env.episode_seed("PickCube", i) for i in range(1000)}
    assert len(seeds) == 1000 and all(0 <= s < 2**31 for s in seeds)
    assert ms_env.episode_seed("PickCube", 0) != ms_env.episode_seed("PushCube", 0)


def test_step_limit_truncates_and_bad_input_is_rejected(maniskill_env):
    maniskill_env.reset(options={"init_state": 0})
    limit = maniskill_env.step_limit
    assert limit == 80
    maniskill_env._t = limit - 1  # jump to the last step rather than simulate 79 of them
    _, _, term, trunc, info = maniskill_env.step(np.zeros(7, np.float32))
    assert (term, trunc, info["success"]) == (False, True, False)
    with pytest.raises(ValueError, match="7-d actions"):
        maniskill_env.step(np.zeros(8))
    with pytest.raises(ValueError, match="non-finite"):
        maniskill_env.step(np.full(7, np.nan))
    with pytest.raises(ValueError, match=r"out of range \[0, 1000\)"):
        maniskill_env.reset(options={"init_state": 1000})
    with pytest.raises(ValueError, match="unknown reset options"):
        maniskill_env.reset(options={"init_state": 0, "seed": 1})


def test_env_options_are_checked_by_name():
    assert ms_env.check_options({}) == {"image_size": 128, "hand_camera": True}
    with pytest.raises(ValueError, match=r"unknown env options \['camera'\]"):
        ms_env.check_options({"camera": 1})
    for bad in (8, 129, 64.0, True):
        with pytest.raises(ValueError, match=r"image_size must be an int in \[16, 128\]"):
            ms_env.check_options({"image_size": bad})
    with pytest.raises(ValueError, match="hand_camera must be true or false"):
        ms_env.check_options({"hand_camera": "yes"})


def test_contract_check_catches_a_broken_observation(maniskill_env):
    obs, _ = maniskill_env.reset(options={"init_state": 0})
    with pytest.raises(ObservationError, match="images.base"):
        validate_observation({**obs, "images": {"base": obs["images"]["base"][..., 0]}}, "m")


def test_missing_vulkan_driver_names_the_driver_and_the_fix():
    code = textwrap.dedent(
        """
        from ript_core import get_registry
        from ript_maniskill.rendering import VulkanUnavailableError
        reg = get_registry()
        a = reg.availability("maniskill")
        print(a.available, "|", a.reason)
        from ript_maniskill.env import ManiSkillEnv
        try:
            ManiSkillEnv("PickCube", image_size=16)
        except VulkanUnavailableError as exc:
            print("raised:", exc)
        """
    )
    missing = "/nonexistent/vk_icd.json"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, VK_ICD_FILENAMES=missing),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        f"False | the Vulkan driver manifest(s) ['{missing}'] named by VK_ICD_FILENAMES do not exist"
    )
    raised = lines[1]
    assert raised.startswith("raised: SAPIEN (ManiSkill3's renderer) found no usable Vulkan device")
    for needle in (
        "ErrorIncompatibleDriver",
        "lavapipe >= 24.3",
        "apt-get install -t bookworm-backports mesa-vulkan-drivers",
        "export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json",
    ):
        assert needle in raised


def test_a_skipped_observation_keeps_old_images_and_the_next_renders_as_usual(maniskill_env):
    check_unread_observations(maniskill_env, action_dim=7)
