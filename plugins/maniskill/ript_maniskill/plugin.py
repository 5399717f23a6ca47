"""Registers the ``maniskill`` backend; named by the ``ript_core.plugins``
entry point in ript-core's ``pyproject.toml`` and loaded exactly like a
third-party plugin. Imports only ript-core's public API; ManiSkill/SAPIEN are
imported lazily so that the plugin loads (and reports what is missing)
without them.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ript_core import ActionAdapter, Availability, ObservationAdapter, TaskInfo, hookimpl
from ript_maniskill import NAME

INSTALL = 'pip install "ript-core[maniskill]"'


@hookimpl
def ript_backends() -> list[str]:
    return [NAME]


def _missing_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a parent package hidden or half-installed
        return True


def availability() -> Availability:
    """ManiSkill3, SAPIEN and a Vulkan driver (file checks; no env is built)."""
    for module in ("mani_skill", "sapien"):
        if _missing_module(module):
            return Availability.missing(f"{module} is not installed", INSTALL)
    from ript_maniskill import rendering

    reason = rendering.missing_driver_reason()
    if reason is not None:
        return Availability.missing(reason, rendering.INSTALL_HINT)
    return Availability.ok()


@hookimpl
def ript_check_available(backend: str) -> Availability | None:
    return availability() if backend == NAME else None


@hookimpl
def ript_task_catalogue(backend: str) -> list[TaskInfo] | None:
    if backend != NAME:
        return None
    from ript_maniskill.catalogue import catalogue

    return catalogue()


@hookimpl
def ript_make_env(backend: str, task: str, options: dict[str, Any]) -> Any:
    if backend != NAME:
        return None
    from ript_maniskill.env import ManiSkillEnv, check_options

    return ManiSkillEnv(task, **check_options(options))


@hookimpl
def ript_default_adapters(
    backend: str, task: str, options: dict[str, Any]
) -> tuple[ObservationAdapter, ActionAdapter] | None:
    if backend != NAME:
        return None
    from ript_maniskill.adapters import make_adapters
    from ript_maniskill.env import check_options

    check_options(options)  # the same options the env gets: fail here, before any worker starts
    return make_adapters()


@hookimpl
def ript_scripted_expert(backend: str, task: str) -> Any:
    if backend != NAME:
        return None
    from ript_maniskill.expert import EXPERTS

    return EXPERTS.get(task)
