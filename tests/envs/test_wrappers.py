"""SettleOnReset: the settle ritual as one wrapper, bit-identical to stepping
the no-op by hand after a reset."""

from __future__ import annotations

import numpy as np
import pytest

from ript_core import TaskInfo, make_env
from ript_core.envs import SettleOnReset
from ript_core.plugins import get_registry


def test_settling_equals_noop_steps_by_hand_and_keeps_the_pre_settle_frame():
    noop = (0.5, -0.5, -1.0)  # a "no-op" that moves, so that settling is visible
    by_hand = make_env("toy/reach-red")
    obs, info = by_hand.reset(seed=3, options={"init_state": 5})
    before = by_hand.render()
    for _ in range(3):
        obs, _, _, _, info = by_hand.step(np.asarray(noop, dtype=np.float32))

    env = SettleOnReset(make_env("toy/reach-red"), 3, noop)
    env.render_before_settle = True
    settled, settled_info = env.reset(seed=3, options={"init_state": 5})
    np.testing.assert_array_equal(settled["state"], obs["state"])
    for cam, img in obs["images"].items():
        np.testing.assert_array_equal(settled["images"][cam], img)
    assert settled_info == info
    np.testing.assert_array_equal(env.reset_frame, before)
    env.render_before_settle = False
    env.reset(seed=3, options={"init_state": 5})
    assert env.reset_frame is None


def test_zero_steps_is_the_plain_reset_and_a_task_says_how_to_settle():
    plain, _ = make_env("toy/reach-red").reset(seed=1, options={"init_state": 2})
    env = SettleOnReset.for_task(
        make_env("toy/reach-red"), get_registry().task_info("toy", "reach-red")
    )
    assert env.steps == 0
    obs, _ = env.reset(seed=1, options={"init_state": 2})
    np.testing.assert_array_equal(obs["state"], plain["state"])
    task = TaskInfo("t", "do it", 1, 5, settle_steps=2, noop_action=(0.0, 0.0, -1.0))
    assert SettleOnReset.for_task(make_env("toy/reach-red"), task).steps == 2
    with pytest.raises(ValueError, match="needs a no-op action"):
        SettleOnReset(make_env("toy/reach-red"), 2, None)


def test_the_registry_makes_settled_envs():
    env = get_registry().make_settled_env("toy", "reach-green", {"image_size": 32})
    assert isinstance(env, SettleOnReset) and env.steps == 0
    obs, _ = env.reset(seed=0, options={"init_state": 0})
    assert obs["images"]["agentview"].shape == (32, 32, 3)
