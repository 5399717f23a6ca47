"""Registers the ``toy`` backend; loaded through the ``ript_core.plugins``
entry point like any third-party plugin."""

from __future__ import annotations

from typing import Any

from ript_core.envs.catalogue import TaskInfo
from ript_core.envs.spec import BackendFootprint, BackendSpec, Expert
from ript_core.hookspecs import hookimpl

NAME = "toy"
N_INIT_STATES = 200
MAX_STEPS = 30


class ToySpec(BackendSpec):
    """Reach-and-grasp on a 2-D table: pure numpy, no simulator to install."""

    name = NAME
    env_options = {
        "image_size": 64,
        "step_size": 0.08,
        "grasp_radius": 0.07,
        "max_steps": MAX_STEPS,
        "wrist_view": 0.5,
        "block_half": 0.05,
    }
    footprint = BackendFootprint(NAME, 20_000_000, 0.0003)
    install_hint = "pip install ript-core"

    def catalogue(self) -> list[TaskInfo]:
        from ript_core.envs.toy.env import BLOCKS

        return [
            TaskInfo(
                name=f"reach-{colour}",
                instruction=f"pick up the {colour} block",
                n_init_states=N_INIT_STATES,
                max_steps=MAX_STEPS,
                suite="toy",
            )
            for colour in BLOCKS
        ]

    def make_env(self, task: str, options: dict[str, Any]):
        from ript_core.envs.toy.env import ToyReachEnv

        return ToyReachEnv(task.removeprefix("reach-"), n_init_states=N_INIT_STATES, **options)

    def default_adapters(self, task: str, options: dict[str, Any]):
        from ript_core.envs.toy.adapters import make_adapters

        return make_adapters()

    def scripted_expert(self, task: str) -> Expert:
        from ript_core.envs.toy.expert import expert_action

        return expert_action


@hookimpl
def ript_backends() -> list[BackendSpec]:
    return [ToySpec()]
