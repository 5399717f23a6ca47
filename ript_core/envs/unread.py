"""Observations nobody reads, and envs that may skip rendering them.

A rollout worker executes a chunk of actions and hands only the LAST
observation to the policy; settling after a reset reads only the last no-op
step's. Every other step's observation is thrown away. For a backend whose
cameras cost more than its physics (a software-rendered MuJoCo scene: ~55 of
~70 ms a step), rendering those frames is most of the rollout's time.

The opt-in: an env defines ``skip_next_observation()``. ript-core calls it
right before a step whose observation will not be read (never while frames are
recorded for a video). For that one step the env may leave its images as they
were (the previous observation's); everything else it returns, and everything
``info`` says (success!), must be current. Gymnasium has no such notion, so
this is ript-core's own small protocol, found through wrappers with
gymnasium's ``has_wrapper_attr``.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym

METHOD = "skip_next_observation"


def skips_observations(env: gym.Env) -> bool:
    """Whether ``env`` (or an env it wraps) may skip an unread observation."""
    return bool(env.has_wrapper_attr(METHOD))


def skipper(env: gym.Env) -> Callable[[], None] | None:
    """``env``'s ``skip_next_observation`` (found through wrappers), or None."""
    return env.get_wrapper_attr(METHOD) if env.has_wrapper_attr(METHOD) else None


def skip_next_observation(env: gym.Env) -> None:
    """Tell ``env`` that its next step's observation will not be read (a no-op
    for an env without the method)."""
    if env.has_wrapper_attr(METHOD):
        env.get_wrapper_attr(METHOD)()
