"""The plugin module named by the entry point: hands ript-core one backend
spec, ``gridworld``. It imports only ript-core's public API."""

from __future__ import annotations

import numpy as np

from ript_core import (
    Availability,
    BackendFootprint,
    BackendSpec,
    ComposedActionAdapter,
    ComposedObservationAdapter,
    TaskInfo,
    clip_actions,
    first_missing_module,
    hookimpl,
    slice_action_dims,
)

NAME = "gridworld"


def _to_policy(obs):
    return {
        "images": {"base_0_rgb": obs["images"]["top"]},
        "state": obs["state"],
        "prompt": obs["instruction"],
    }


def expert(env, rng, noise):
    """The scripted expert: one cell towards the goal, read from the
    (unwrapped) env's privileged state; ``noise`` jitters the move."""
    move = np.sign(env.goal - env.agent) + rng.normal(0.0, noise, 2)
    return np.clip(move, -1.0, 1.0).astype(np.float32)


class GridworldSpec(BackendSpec):
    name = NAME
    # option name -> default: check_options refuses any other name and a value of
    # another type; make_env gets these defaults updated with the given values
    env_options = {"cell_px": 8}
    install_hint = "pip install ript-plugin-gridworld"
    # one env worker: an interpreter with numpy (bytes), one step (seconds)
    footprint = BackendFootprint(NAME, 30_000_000, 0.0001)

    def availability(self):
        # A real plugin checks its simulator here, without importing it.
        missing = first_missing_module(["gymnasium"])
        if missing is not None:
            return Availability.missing(f"{missing} is not installed", "pip install gymnasium")
        return Availability.ok()

    def catalogue(self):
        return [TaskInfo("walk-5x5", "walk to the green cell", n_init_states=10, max_steps=20)]

    def check_options(self, options):
        options = super().check_options(options)  # names, types, defaults
        if not 1 <= options["cell_px"] <= 64:
            raise ValueError(f"gridworld: cell_px must be in 1..64, got {options['cell_px']}")
        return options

    def make_env(self, task, options):
        from ript_gridworld.env import GridWalkEnv  # import the simulator lazily

        info = self.catalogue()[0]
        return GridWalkEnv(
            n_init_states=info.n_init_states, max_steps=info.max_steps, cell_px=options["cell_px"]
        )

    def default_adapters(self, task, options):
        return (
            ComposedObservationAdapter([_to_policy]),
            ComposedActionAdapter([slice_action_dims(2), clip_actions(-np.ones(2), np.ones(2))]),
        )

    def scripted_expert(self, task):
        return expert


@hookimpl
def ript_backends():
    return [GridworldSpec()]
