"""The scripted experts (one per task): each solves the first init states, and
``ript record-demos`` records their episodes."""

from __future__ import annotations

import numpy as np
import pytest

from ript_core import get_registry
from tests.plugins.robosuite.conftest import require_robosuite

require_robosuite()

from ript_robosuite.catalogue import TASKS  # noqa: E402
from ript_robosuite.env import RobosuiteEnv  # noqa: E402

INIT_STATES = range(3)  # docs/backends/robosuite.md has the rates over 50


@pytest.mark.parametrize("task", list(TASKS))
def test_offered_expert_solves_the_first_init_states(task):
    expert = get_registry().scripted_expert("robosuite", task)
    # The expert reads privileged state only, so the env renders nothing here
    # (~10x faster); physics is the same as with cameras.
    env = RobosuiteEnv(task, render=False)
    try:
        for i in INIT_STATES:
            env.reset(seed=i, options={"init_state": i})
            rng = np.random.default_rng(i)
            for _ in range(env.step_limit):
                _, _, term, trunc, info = env.step(expert(env, rng, 0.0))
                if term or trunc:
                    break
            # success as robosuite computes it, asked directly
            assert info["success"] == bool(env.robosuite_env._check_success())
            assert info["success"], f"{task}: the expert failed init state {i}"
    finally:
        env.close()


def test_ript_record_demos_records_expert_episodes(tmp_path):
    from ript_core.cli import main

    out = tmp_path / "lift.npz"
    args = ["record-demos", "robosuite/Lift", "-n", "2", "--noise", "0.1", "-o", str(out)]
    opts = ["--option", "image_size=16", "--option", "wrist_camera=false"]
    assert main(args + opts) == 0
    with np.load(out) as f:
        assert int(f["successes"]) == 2
        n = len(f["state"])
        assert f["image/base_0_rgb"].shape == (n, 16, 16, 3) and f["state"].shape == (n, 8)
        assert 20 < n < 2 * 80  # two episodes of ~35 steps
