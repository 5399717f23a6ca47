"""Rolling out a backend's scripted expert (its spec's ``scripted_expert``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ript_core.envs.spec import Expert


def run_expert_episode(
    env: gym.Env, expert: Expert, init_state: int, seed: int = 0, noise: float = 0.0
) -> tuple[list[dict], list[np.ndarray], bool]:
    """Roll out ``expert`` from ``init_state`` to the episode's end:
    (observations, actions, success)."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed, options={"init_state": init_state})
    observations, actions = [], []
    done = False
    while not done:
        action = expert(env.unwrapped, rng, noise)
        observations.append(obs)
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return observations, actions, bool(info["success"])
