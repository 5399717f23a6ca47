"""Registers the ``libero`` backend; named by the ``ript_core.plugins`` entry
point in ript-core's ``pyproject.toml``, loaded exactly like a third-party
plugin. Imports only ript-core's public API; LIBERO itself is imported
lazily so that the plugin loads (and reports what is missing) without it.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from ript_core import ActionAdapter, Availability, ObservationAdapter, TaskInfo, hookimpl
from ript_libero import NAME

INSTALL = 'pip install "ript-core[libero]"'


@hookimpl
def ript_backends() -> list[str]:
    return [NAME]


def _missing_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a parent package hidden or half-installed
        return True


def availability() -> Availability:
    """LIBERO (with its bundled assets), robosuite, MuJoCo and an offscreen GL library."""
    for module in ("libero", "robosuite", "mujoco"):
        if _missing_module(module):
            return Availability.missing(f"{module} is not installed", INSTALL)
    try:
        from libero.libero import get_libero_path

        for key in ("bddl_files", "init_states", "assets"):
            path = get_libero_path(key)
            if not os.path.isdir(path):
                return Availability.missing(f"LIBERO's {key} directory {path} is missing", INSTALL)
    except Exception as exc:  # the official PyPI `libero` without its downloaded assets, ...
        return Availability.missing(f"LIBERO is not usable: {type(exc).__name__}: {exc}", INSTALL)
    from ript_libero import rendering

    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    backends = (requested,) if requested in rendering.LIBRARIES else rendering.DEFAULT_ORDER
    if requested in ("", *rendering.LIBRARIES) and not any(
        rendering.library_present(b) for b in backends
    ):
        return Availability.missing(
            f"no offscreen OpenGL library for MUJOCO_GL={requested or 'egl/osmesa'}",
            rendering.INSTALL_HINT,
        )
    return Availability.ok()


@hookimpl
def ript_check_available(backend: str) -> Availability | None:
    return availability() if backend == NAME else None


@hookimpl
def ript_task_catalogue(backend: str) -> list[TaskInfo] | None:
    if backend != NAME:
        return None
    from ript_libero.catalogue import catalogue

    return list(catalogue())


@hookimpl
def ript_make_env(backend: str, task: str, options: dict[str, Any]) -> Any:
    if backend != NAME:
        return None
    from ript_libero.env import LiberoEnv, check_options

    return LiberoEnv(task, **check_options(options))


@hookimpl
def ript_default_adapters(
    backend: str, task: str, options: dict[str, Any]
) -> tuple[ObservationAdapter, ActionAdapter] | None:
    if backend != NAME:
        return None
    from ript_libero.adapters import make_adapters
    from ript_libero.env import check_options

    check_options(options)  # the same options the env gets: fail here, before any worker starts
    return make_adapters()
