"""Unread observations: who is told to skip one, and when (settling, a worker's
action chunk), and that envs without the method are left alone."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ript_core.envs import SettleOnReset
from ript_core.envs.unread import skip_next_observation, skips_observations
from ript_core.rollout.workers import EnvHost, StepCommand


class Plain(gym.Env):
    """Renders a frame that shows the step count at every step."""

    observation_space = gym.spaces.Dict({})
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, success_at: int | None = None) -> None:
        self.t = 0
        self.success_at = success_at
        self.skip = False
        self.renders: list[int] = []  # the step counts it rendered at
        self.skipped: list[int] = []
        self.image = np.zeros((2, 2, 3), np.uint8)

    def _obs(self) -> dict[str, Any]:
        if self.skip:
            self.skipped.append(self.t)
        else:
            self.renders.append(self.t)
            self.image = np.full((2, 2, 3), self.t, np.uint8)
        self.skip = False
        return {"images": {"cam": self.image}, "state": np.array([float(self.t)])}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.renders.clear()
        self.skipped.clear()
        return self._obs(), {"success": False}

    def step(self, action):
        self.t += 1
        success = self.t == self.success_at
        return self._obs(), 0.0, success, False, {"success": success}

    def render(self) -> np.ndarray:
        return self.image


class Counter(Plain):
    """Told that a step's observation will not be read, keeps the last frame."""

    def skip_next_observation(self) -> None:
        self.skip = True


def test_the_method_is_found_through_wrappers_and_absent_is_a_no_op():
    env = Counter()
    wrapped = gym.wrappers.RecordEpisodeStatistics(SettleOnReset(env, 0, None))
    assert skips_observations(wrapped)
    skip_next_observation(wrapped)
    assert env.skip
    plain = gym.Env()
    assert not skips_observations(plain)
    skip_next_observation(plain)  # nothing to call, nothing raised


def test_settling_renders_only_the_last_settle_step():
    env = Counter()
    settled = SettleOnReset(env, 4, (0.0,))
    obs, _ = settled.reset(seed=0)
    assert env.renders == [0, 4] and env.skipped == [1, 2, 3]
    assert obs["images"]["cam"][0, 0, 0] == 4 and obs["state"][0] == 4


def _host(env: gym.Env) -> EnvHost:
    host = EnvHost()
    host.adopt(SettleOnReset(env, 0, None))
    host.env.reset(seed=0)
    return host


def test_a_worker_skips_all_but_the_last_observation_of_a_chunk():
    env = Counter()
    host = _host(env)
    result = host.step(StepCommand([np.zeros(1, np.float32)] * 5, False))
    assert env.skipped == [1, 2, 3, 4] and env.renders == [0, 5]
    assert result.n_steps == 5 and result.obs["images"]["cam"][0, 0, 0] == 5
    result = host.step(StepCommand([np.zeros(1, np.float32)] * 1, False))
    assert env.renders == [0, 5, 6] and result.obs["state"][0] == 6


def test_nothing_is_skipped_while_frames_are_recorded():
    env = Counter()
    host = _host(env)
    result = host.step(StepCommand([np.zeros(1, np.float32)] * 3, True))
    assert env.skipped == [] and env.renders == [0, 1, 2, 3]
    assert [int(f[0, 0, 0]) for f in result.frames] == [1, 2, 3]


def test_an_episode_that_ends_mid_chunk_stops_there():
    env = Counter(success_at=2)
    host = _host(env)
    result = host.step(StepCommand([np.zeros(1, np.float32)] * 5, False))
    assert result.success and result.n_steps == 2
    # the ending step's observation is never read: it may be stale
    assert env.skipped == [1, 2] and result.obs["state"][0] == 2


def test_an_env_without_the_method_renders_every_step():
    env = Plain()
    assert not skips_observations(env)
    host = _host(env)
    host.step(StepCommand([np.zeros(1, np.float32)] * 3, False))
    assert env.renders == [0, 1, 2, 3]
