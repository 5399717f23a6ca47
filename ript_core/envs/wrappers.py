"""Env rituals as gymnasium wrappers, applied where envs are made."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from ript_core.envs.catalogue import TaskInfo
from ript_core.envs.unread import skip_next_observation


class SettleOnReset(gym.Wrapper):
    """After every reset, step the no-op action ``steps`` times and return what
    the last of those steps observed, with its ``info``: the scene the policy
    first sees (LIBERO lets dropped objects come to rest this way).

    Set ``render_before_settle`` to keep the frame rendered right after the
    inner reset in ``reset_frame`` (the first frame of a recorded episode).
    """

    def __init__(self, env: gym.Env, steps: int, noop: Sequence[float] | None) -> None:
        super().__init__(env)
        self.settle_as(steps, noop)
        self.render_before_settle = False
        self.reset_frame: np.ndarray | None = None

    def settle_as(self, steps: int, noop: Sequence[float] | None) -> None:
        """Settle the next resets with ``steps`` no-op actions ``noop`` (a
        rollout worker keeps one env across tasks' commands)."""
        if steps < 0:
            raise ValueError(f"settle steps must be >= 0, got {steps}")
        if steps and noop is None:
            raise ValueError("settling needs a no-op action")
        self.steps = steps
        self.noop = None if noop is None else np.asarray(noop, dtype=np.float32)

    @classmethod
    def for_task(cls, env: gym.Env, task: TaskInfo) -> SettleOnReset:
        """Settle as the catalogue says ``task`` must (``settle_steps``, ``noop_action``)."""
        return cls(env, task.settle_steps, task.noop_action)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.reset_frame = self.env.render() if self.render_before_settle else None
        for i in range(self.steps):
            if i < self.steps - 1:  # only the last settle step's observation is read
                skip_next_observation(self.env)
            obs, _, _, _, info = self.env.step(self.noop.copy())
        return obs, info
