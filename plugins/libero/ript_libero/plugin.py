"""Registers the ``libero`` backend; named by the ``ript_core.plugins`` entry
point in ript-core's ``pyproject.toml``, loaded exactly like a third-party
plugin. Imports only ript-core's public API; LIBERO itself is imported
lazily so that the plugin loads (and reports what is missing) without it.
"""

from __future__ import annotations

import os
from typing import Any

from ript_core import (
    GB,
    ActionAdapter,
    Availability,
    BackendFootprint,
    BackendSpec,
    ObservationAdapter,
    TaskInfo,
    first_missing_module,
    hookimpl,
    mujoco_gl,
)
from ript_libero import NAME
from ript_libero.options import ENV_OPTIONS, check_options

INSTALL = 'pip install "ript-core[libero]" (from a clone: pip install -e ".[libero]")'


def availability() -> Availability:
    """LIBERO (with its bundled assets), robosuite, MuJoCo and an offscreen GL library."""
    missing = first_missing_module(("libero", "robosuite", "mujoco"))
    if missing is not None:
        return Availability.missing(f"{missing} is not installed", INSTALL)
    try:
        from libero.libero import get_libero_path

        for key in ("bddl_files", "init_states", "assets"):
            path = get_libero_path(key)
            if not os.path.isdir(path):
                return Availability.missing(f"LIBERO's {key} directory {path} is missing", INSTALL)
    except Exception as exc:  # the official PyPI `libero` without its downloaded assets, ...
        return Availability.missing(f"LIBERO is not usable: {type(exc).__name__}: {exc}", INSTALL)
    reason = mujoco_gl.missing_library_reason()
    if reason is not None:
        return Availability.missing(reason, mujoco_gl.INSTALL_HINT)
    return Availability.ok()


class LiberoSpec(BackendSpec):
    """The five LIBERO suites on the real simulator (MuJoCo, offscreen GL)."""

    name = NAME
    env_options = ENV_OPTIONS
    install_hint = INSTALL
    # two cameras rendered on the CPU by Mesa: docs/backends/libero.md has the figures
    footprint = BackendFootprint(NAME, 1 * GB, 0.19, unread_step_seconds=0.01)

    def availability(self) -> Availability:
        return availability()

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return check_options(options)  # the generic checks, then the protocol's values

    def catalogue(self) -> list[TaskInfo]:
        from ript_libero.catalogue import catalogue

        return list(catalogue())

    def make_env(self, task: str, options: dict[str, Any]) -> Any:
        from ript_libero.env import LiberoEnv

        return LiberoEnv(task, **options)

    def default_adapters(
        self, task: str, options: dict[str, Any]
    ) -> tuple[ObservationAdapter, ActionAdapter]:
        from ript_libero.adapters import make_adapters

        return make_adapters()


@hookimpl
def ript_backends() -> list[BackendSpec]:
    return [LiberoSpec()]
