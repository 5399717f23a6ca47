"""``protocol: openpi`` reproduces openpi's LIBERO evaluation sequence.

The reference is a raw LIBERO env driven here as openpi's client
(``examples/libero/main.py``) drives it: ``np.random.seed(7)``, the task's
env built from LIBERO's benchmark API and ``env.seed(7)``, then per episode
``i``: ``reset()``, ``set_init_state(initial_states[i])``, 10 no-op steps
(``num_steps_wait``) and the policy's steps. Our env is asked for the init
states out of order, so that it must replay the resets it skipped.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from tests.plugins.libero.conftest import ENV_OPTIONS, IMAGE_SIZE, TASK, require_libero

SIZE = IMAGE_SIZE  # the shared env's, so that the default protocol's scenes compare too
EPISODES = 3
WAIT_STEPS = 10
DUMMY_ACTION = [0.0] * 6 + [-1.0]
# two policy steps per episode: what openpi's loop does between resets must not
# disturb the next episode's scene
POLICY_ACTIONS = ([0.3, -0.2, 0.1, 0.0, 0.05, 0.0, 1.0], [-0.1, 0.2, 0.0, 0.1, 0.0, -0.05, 1.0])


def openpi_first_observations(task: str) -> list[dict]:
    """The observation openpi's policy first sees in episodes 0..EPISODES-1."""
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    suite_name, _, name = task.partition(".")
    np.random.seed(7)
    suite = benchmark.get_benchmark_dict()[suite_name]()
    task_id = next(i for i in range(suite.n_tasks) if suite.get_task(i).name == name)
    libero_task = suite.get_task(task_id)
    initial_states = suite.get_task_init_states(task_id)
    bddl = pathlib.Path(get_libero_path("bddl_files")) / libero_task.problem_folder
    env = OffScreenRenderEnv(
        bddl_file_name=str(bddl / libero_task.bddl_file), camera_heights=SIZE, camera_widths=SIZE
    )
    env.seed(7)
    firsts = []
    try:
        for episode in range(EPISODES):
            env.reset()
            obs = env.set_init_state(initial_states[episode])
            for _ in range(WAIT_STEPS):
                obs, _, _, _ = env.step(DUMMY_ACTION)
            firsts.append({k: np.array(v) for k, v in obs.items()})
            for action in POLICY_ACTIONS:
                env.step(action)
    finally:
        env.close()
    return firsts


@pytest.fixture(scope="module")
def reference():
    require_libero()
    return openpi_first_observations(TASK)


def test_openpi_protocol_gives_openpis_episodes_in_any_order(reference):
    from ript_core.plugins import get_registry

    options = {"image_size": SIZE, "protocol": "openpi"}
    env = get_registry().make_settled_env("libero", TASK, options)
    # the process's own np.random is neither used nor disturbed by the env
    np.random.seed(123)
    expected_draw = np.random.RandomState(123).random_sample()
    try:
        for episode in (1, 0, 2):  # 1 replays reset 0; 2 continues from 1's stream
            obs, _ = env.reset(seed=1000 + episode, options={"init_state": episode})
            raw = reference[episode]
            np.testing.assert_array_equal(obs["images"]["agentview"], raw["agentview_image"])
            np.testing.assert_array_equal(obs["images"]["wrist"], raw["robot0_eye_in_hand_image"])
            state = np.concatenate(
                [raw["robot0_eef_pos"], raw["robot0_eef_quat"], raw["robot0_gripper_qpos"]]
            )
            np.testing.assert_array_equal(obs["state"], state)
    finally:
        env.close()
    assert np.random.random_sample() == expected_draw


def test_the_default_protocol_places_other_scenes(reference, libero_host):
    """Why the option exists: per-context seeding renders other fixture poses
    than openpi's sequence for the same init states."""
    from ript_libero.catalogue import NOOP_ACTION

    from ript_core.rollout.workers import ResetCommand

    def scene_differs(episode: int) -> bool:
        command = ResetCommand(
            "libero", TASK, episode, 0, tuple(ENV_OPTIONS.items()), WAIT_STEPS, NOOP_ACTION
        )
        ours = libero_host.handle(command).obs["images"]["agentview"]
        return not np.array_equal(ours, reference[episode]["agentview_image"])

    assert any(scene_differs(episode) for episode in range(EPISODES))  # stops at the first


def test_protocol_values_are_checked():
    require_libero()
    from ript_libero.options import check_options

    with pytest.raises(ValueError, match=r"protocol must be one of \['ript', 'openpi'\]"):
        check_options({"protocol": "lerobot"})
    with pytest.raises(ValueError, match="openpi_seed must be an int"):
        check_options({"openpi_seed": "7"})
