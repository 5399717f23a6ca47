"""A scriptable backend for runner tests (installed by conftest as an entry point
so that spawned worker processes discover it like any plugin).

State = [t, init_state, last action dim 0]. Success when the running sum of
action dim 0 exceeds ``1 + init_state % 3``, so outcomes depend on the policy.
Task ``nan`` returns a NaN state at t == 3; task ``hang`` sleeps on its
first step whenever the file named by $FAKESIM_HANG_ONCE does not exist yet
(and creates it), so only the first attempt hangs. Task ``quiet`` reports
success in ``info`` but never terminates (the runner must stop on success).
Task ``slow`` never succeeds and sleeps ``options["step_sleep_s"]`` per step:
a simulator of known cost for the schedule timing tests. Task ``void``
raises ``EpisodeDiscarded`` on its second step whenever the file named by
$FAKESIM_HANG_ONCE does not exist yet (and creates it): one voided episode.
"""

import os
import time

import gymnasium as gym
import numpy as np

from ript_core import (
    BackendSpec,
    ComposedActionAdapter,
    ComposedObservationAdapter,
    EpisodeDiscarded,
    TaskInfo,
    clip_actions,
    hookimpl,
    slice_action_dims,
)


class FakeEnv(gym.Env):
    def __init__(self, task, step_sleep_s=0.0):
        self.task = task
        self.step_sleep_s = step_sleep_s
        self.observation_space = gym.spaces.Dict({})
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.init = options["init_state"]
        self.t = 0
        self.total = 0.0
        self.last = 0.0
        return self._obs(), {"success": False}

    def step(self, action):
        if self.task == "hang" and self.t == 0:
            marker = os.environ["FAKESIM_HANG_ONCE"]
            try:  # atomic: two workers racing on a first step must not both hang
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                time.sleep(60)
        if self.task == "void" and self.t == 1:
            try:
                os.close(os.open(os.environ["FAKESIM_HANG_ONCE"], os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                raise EpisodeDiscarded("the link dropped")
        if self.step_sleep_s:
            time.sleep(self.step_sleep_s)
        self.t += 1
        self.last = float(action[0])
        self.total += self.last
        success = self.task != "slow" and self.total > 1 + self.init % 3
        terminated = success and self.task != "quiet"
        info = {"success": success, "metrics": {"fake/steps": self.t}}
        return self._obs(), float(success), terminated, False, info

    def render(self):
        return np.full((4, 4, 3), self.t, np.uint8)

    def _obs(self):
        state = np.array([self.t, self.init, self.last], np.float32)
        if self.task == "nan" and self.t == 3:
            state[0] = np.nan
        return {"images": {"cam": self.render()}, "state": state, "instruction": "go right"}


def _fields(obs):
    return {
        "images": {"base_0_rgb": obs["images"]["cam"]},
        "state": obs["state"],
        "prompt": obs["instruction"],
    }


class FakeSimSpec(BackendSpec):
    name = "fakesim"
    env_options = {"step_sleep_s": 0.0}

    def catalogue(self):
        return [
            TaskInfo("count", "go right", 6, 12, settle_steps=2, noop_action=(0.0, 0.0)),
            TaskInfo("nan", "go right", 2, 12),
            TaskInfo("hang", "go right", 2, 12),
            TaskInfo("quiet", "go right", 6, 12),
            TaskInfo("slow", "go right", 8, 30),
            TaskInfo("void", "go right", 2, 12),
        ]

    def make_env(self, task, options):
        return FakeEnv(task, float(options["step_sleep_s"]))

    def default_adapters(self, task, options):
        return (
            ComposedObservationAdapter([_fields]),
            ComposedActionAdapter([slice_action_dims(2), clip_actions(-np.ones(2), np.ones(2))]),
        )


@hookimpl
def ript_backends():
    return [FakeSimSpec()]
