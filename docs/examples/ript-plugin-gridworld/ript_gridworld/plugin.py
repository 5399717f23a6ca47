"""The plugin module named by the entry point: implements ript-core's hooks
for one backend, ``gridworld``. It imports only ript-core's public API."""

from __future__ import annotations

import importlib.util

import numpy as np

from ript_core import (
    Availability,
    ComposedActionAdapter,
    ComposedObservationAdapter,
    TaskInfo,
    clip_actions,
    hookimpl,
    slice_action_dims,
)

NAME = "gridworld"


@hookimpl
def ript_backends():
    return [NAME]


@hookimpl
def ript_check_available(backend):
    if backend != NAME:
        return None
    # A real plugin checks its simulator here, without importing it.
    if importlib.util.find_spec("gymnasium") is None:
        return Availability.missing("gymnasium is not installed", "pip install gymnasium")
    return Availability.ok()


@hookimpl
def ript_task_catalogue(backend):
    if backend != NAME:
        return None
    return [TaskInfo("walk-5x5", "walk to the green cell", n_init_states=10, max_steps=20)]


@hookimpl
def ript_make_env(backend, task, options):
    if backend != NAME:
        return None
    from ript_gridworld.env import GridWalkEnv  # import the simulator lazily

    if options:
        raise ValueError(f"gridworld takes no env options, got {sorted(options)}")
    return GridWalkEnv()


def _to_policy(obs):
    return {
        "images": {"base_0_rgb": obs["images"]["top"]},
        "state": obs["state"],
        "prompt": obs["instruction"],
    }


@hookimpl
def ript_default_adapters(backend, task, options):
    if backend != NAME:
        return None
    return (
        ComposedObservationAdapter([_to_policy]),
        ComposedActionAdapter([slice_action_dims(2), clip_actions(-np.ones(2), np.ones(2))]),
    )
