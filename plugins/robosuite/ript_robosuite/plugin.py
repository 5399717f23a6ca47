"""Registers the ``robosuite`` backend; named by the ``ript_core.plugins``
entry point in ript-core's ``pyproject.toml`` and loaded exactly like a
third-party plugin. Imports only ript-core's public API; robosuite itself is
imported lazily so that the plugin loads (and reports what is missing)
without it.
"""

from __future__ import annotations

from typing import Any

from ript_core import (
    GB,
    ActionAdapter,
    Availability,
    BackendFootprint,
    BackendSpec,
    Expert,
    ObservationAdapter,
    TaskInfo,
    first_missing_module,
    hookimpl,
    mujoco_gl,
)
from ript_robosuite import NAME, versions
from ript_robosuite.options import ENV_OPTIONS, IMAGE_SIZE_RANGE

INSTALL = 'pip install "ript-core[robosuite]" (from a clone: pip install -e ".[robosuite]")'


def availability() -> Availability:
    """robosuite (a supported release), MuJoCo and an offscreen GL library;
    file and metadata checks only, no env is built."""
    missing = first_missing_module(("robosuite", "mujoco"))
    if missing is not None:
        return Availability.missing(f"{missing} is not installed", INSTALL)
    reason = versions.unsupported_reason()
    if reason is not None:
        return Availability.missing(reason, f'pip install "{versions.REQUIREMENT}"')
    reason = mujoco_gl.missing_library_reason()
    if reason is not None:
        return Availability.missing(reason, mujoco_gl.INSTALL_HINT)
    return Availability.ok()


class RobosuiteSpec(BackendSpec):
    """robosuite's single-arm Panda tasks (MuJoCo, offscreen GL), OSC_POSE control."""

    name = NAME
    env_options = ENV_OPTIONS
    image_size_range = IMAGE_SIZE_RANGE
    install_hint = INSTALL
    # two cameras rendered on the CPU by Mesa: docs/backends/robosuite.md has the figures
    footprint = BackendFootprint(NAME, GB // 2, 0.2, unread_step_seconds=0.02)

    def availability(self) -> Availability:
        return availability()

    def catalogue(self) -> list[TaskInfo]:
        from ript_robosuite.catalogue import catalogue

        return catalogue()

    def make_env(self, task: str, options: dict[str, Any]) -> Any:
        from ript_robosuite.env import RobosuiteEnv

        return RobosuiteEnv(task, **options)

    def default_adapters(
        self, task: str, options: dict[str, Any]
    ) -> tuple[ObservationAdapter, ActionAdapter]:
        from ript_robosuite.adapters import make_adapters

        return make_adapters()

    def scripted_expert(self, task: str) -> Expert | None:
        from ript_robosuite.expert import EXPERTS

        return EXPERTS.get(task)


@hookimpl
def ript_backends() -> list[BackendSpec]:
    return [RobosuiteSpec()]
