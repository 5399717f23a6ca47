"""Registers the ``maniskill`` backend; named by the ``ript_core.plugins``
entry point in ript-core's ``pyproject.toml`` and loaded exactly like a
third-party plugin. Imports only ript-core's public API; ManiSkill/SAPIEN are
imported lazily so that the plugin loads (and reports what is missing)
without them.
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
)
from ript_maniskill import NAME
from ript_maniskill.options import ENV_OPTIONS, IMAGE_SIZE_RANGE

INSTALL = 'pip install "ript-core[maniskill]" (from a clone: pip install -e ".[maniskill]")'


def availability() -> Availability:
    """ManiSkill3, SAPIEN and a Vulkan driver (file checks; no env is built)."""
    missing = first_missing_module(("mani_skill", "sapien"))
    if missing is not None:
        return Availability.missing(f"{missing} is not installed", INSTALL)
    from ript_maniskill import rendering

    reason = rendering.missing_driver_reason()
    if reason is not None:
        return Availability.missing(reason, rendering.INSTALL_HINT)
    return Availability.ok()


class ManiSkillSpec(BackendSpec):
    """Table-top Panda tasks on ManiSkill3's CPU simulation, rendered by SAPIEN."""

    name = NAME
    env_options = ENV_OPTIONS
    image_size_range = IMAGE_SIZE_RANGE
    install_hint = INSTALL
    # CPU simulation + one camera rendered by lavapipe: docs/backends/maniskill.md
    footprint = BackendFootprint(NAME, GB // 2, 0.035, unread_step_seconds=0.005)

    def availability(self) -> Availability:
        return availability()

    def catalogue(self) -> list[TaskInfo]:
        from ript_maniskill.catalogue import catalogue

        return catalogue()

    def make_env(self, task: str, options: dict[str, Any]) -> Any:
        from ript_maniskill.env import ManiSkillEnv

        return ManiSkillEnv(task, **options)

    def default_adapters(
        self, task: str, options: dict[str, Any]
    ) -> tuple[ObservationAdapter, ActionAdapter]:
        from ript_maniskill.adapters import make_adapters

        return make_adapters()

    def scripted_expert(self, task: str) -> Expert | None:
        from ript_maniskill.expert import EXPERTS

        return EXPERTS.get(task)


@hookimpl
def ript_backends() -> list[BackendSpec]:
    return [ManiSkillSpec()]
