"""Registers the ``toy`` backend; loaded through the ``ript_core.plugins``
entry point like any third-party plugin."""

from __future__ import annotations

from typing import Any

from ript_core.envs.catalogue import Availability, TaskInfo
from ript_core.envs.options import check_env_options
from ript_core.hookspecs import hookimpl

NAME = "toy"
N_INIT_STATES = 200
MAX_STEPS = 30
# name -> the type its value must have (ToyReachEnv's own defaults apply when unset)
ENV_OPTIONS: dict[str, Any] = {
    "image_size": 64,
    "step_size": 0.08,
    "grasp_radius": 0.07,
    "max_steps": MAX_STEPS,
    "wrist_view": 0.5,
    "block_half": 0.05,
}


def _targets() -> tuple[str, ...]:
    from ript_core.envs.toy.env import BLOCKS

    return BLOCKS


@hookimpl
def ript_backends() -> list[str]:
    return [NAME]


@hookimpl
def ript_check_available(backend: str) -> Availability | None:
    return Availability.ok() if backend == NAME else None


@hookimpl
def ript_task_catalogue(backend: str) -> list[TaskInfo] | None:
    if backend != NAME:
        return None
    return [
        TaskInfo(
            name=f"reach-{colour}",
            instruction=f"pick up the {colour} block",
            n_init_states=N_INIT_STATES,
            max_steps=MAX_STEPS,
            suite="toy",
        )
        for colour in _targets()
    ]


@hookimpl
def ript_make_env(backend: str, task: str, options: dict[str, Any]):
    if backend != NAME:
        return None
    from ript_core.envs.toy.env import ToyReachEnv

    check_env_options(NAME, options, ENV_OPTIONS)
    colour = task.removeprefix("reach-")
    return ToyReachEnv(colour, n_init_states=N_INIT_STATES, **{"max_steps": MAX_STEPS, **options})


@hookimpl
def ript_default_adapters(backend: str, task: str, options: dict[str, Any]):
    if backend != NAME:
        return None
    from ript_core.envs.toy.adapters import make_adapters

    return make_adapters()


@hookimpl
def ript_scripted_expert(backend: str, task: str):
    if backend != NAME:
        return None
    from ript_core.envs.toy.expert import expert_action

    return expert_action
