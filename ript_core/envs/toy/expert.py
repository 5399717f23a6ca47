"""Scripted expert for the toy env: head for the named block, then grasp."""

from __future__ import annotations

import numpy as np

from ript_core.envs.expert import run_expert_episode as rollout_expert
from ript_core.envs.toy.env import ToyReachEnv


def expert_action(
    env: ToyReachEnv, rng: np.random.Generator | None = None, noise: float = 0.0
) -> np.ndarray:
    """The expert's action from privileged state.

    ``noise`` adds Gaussian noise to the motion (not the grasp decision), which
    makes demonstrations more diverse, the way human demos are.
    """
    env = env.unwrapped
    delta = env.target_position - env.ee_position
    dist = float(np.linalg.norm(delta))
    if dist <= 0.5 * env.grasp_radius:
        return np.array([0.0, 0.0, 1.0], dtype=np.float32)
    move = np.clip(delta / env.step_size, -1.0, 1.0)
    if noise and rng is not None:
        move = np.clip(move + rng.normal(0.0, noise, size=2), -1.0, 1.0)
    return np.array([move[0], move[1], -1.0], dtype=np.float32)


def run_expert_episode(
    env: ToyReachEnv, init_state: int, seed: int = 0, noise: float = 0.0
) -> tuple[list[dict], list[np.ndarray], bool]:
    """Roll out the expert from ``init_state``: (observations, actions, success)."""
    return rollout_expert(env, expert_action, init_state, seed=seed, noise=noise)
