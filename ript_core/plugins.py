"""Discovering and calling backend plugins.

Plugins come from the entry point group ``ript_core.plugins`` (built-ins
included). pluggy's own ``load_setuptools_entrypoints`` stops at the first
plugin that fails to import; we load each entry point ourselves so that one
broken plugin is reported by name, with the command that fixes it, while the
others keep working.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterable
from importlib import metadata
from typing import Any

import attrs
import pluggy

from ript_core import hookspecs
from ript_core.envs.catalogue import Availability, TaskInfo

ENTRY_POINT_GROUP = "ript_core.plugins"
TRACE_ENV_VAR = "RIPT_TRACE_HOOKS"
#: the backend that ships inside ript-core (ript_core/envs/toy): the default
#: wherever a command's backend is optional
BUILTIN_BACKEND = "toy"


class BackendNotFoundError(KeyError):
    def __str__(self) -> str:  # KeyError would print the repr
        return str(self.args[0])


class BackendUnavailableError(RuntimeError):
    pass


@attrs.frozen
class BrokenPlugin:
    """An entry point that could not be loaded."""

    name: str
    distribution: str
    error: str
    install: str


def _install_hint(ep: metadata.EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return f"reinstall the package that provides entry point {ep.value!r}"
    extras = dist.metadata.get_all("Provides-Extra") or []
    if ep.name in extras:
        return f'pip install "{dist.name}[{ep.name}]"'
    return f"pip install --force-reinstall {dist.name}"


class PluginRegistry:
    """A pluggy ``PluginManager`` plus the bookkeeping ``ript plugins`` shows."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.broken: list[BrokenPlugin] = []
        self._backend_owner: dict[str, str] = {}
        if os.environ.get(TRACE_ENV_VAR):
            self.pm.trace.root.setwriter(lambda msg: sys.stderr.write(f"[ript hooks] {msg}"))
            self.pm.enable_tracing()

    # -- registration -----------------------------------------------------------------
    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        for ep in metadata.entry_points(group=group):
            if self.pm.get_plugin(ep.name) is not None:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # any import-time failure is the plugin's, not ours
                self.broken.append(
                    BrokenPlugin(
                        name=ep.name,
                        distribution=ep.dist.name if ep.dist else "?",
                        error="".join(traceback.format_exception_only(type(exc), exc)).strip(),
                        install=_install_hint(ep),
                    )
                )
                continue
            self.register(plugin, name=ep.name)

    def register(self, plugin: Any, name: str) -> None:
        """Register a plugin object or module (also how tests add one in-process)."""
        self.pm.register(plugin, name=name)
        for backend in self._call_one(plugin, "ript_backends") or []:
            owner = self._backend_owner.get(backend)
            if owner is not None and owner != name:
                self.pm.unregister(plugin)
                raise ValueError(
                    f"plugin {name!r} declares backend {backend!r}, already provided by "
                    f"plugin {owner!r}; uninstall one of them"
                )
            self._backend_owner[backend] = name

    @staticmethod
    def _call_one(plugin: Any, hook: str) -> Any:
        impl = getattr(plugin, hook, None)
        return impl() if impl is not None else None

    # -- queries -------------------------------------------------------------------
    def backends(self) -> list[str]:
        return sorted(self._backend_owner)

    def owner(self, backend: str) -> str:
        try:
            return self._backend_owner[backend]
        except KeyError:
            known = ", ".join(self.backends()) or "none"
            broken = "".join(
                f"\n  plugin {b.name!r} failed to load: {b.error}\n    fix: {b.install}"
                for b in self.broken
            )
            raise BackendNotFoundError(
                f"no backend named {backend!r} (installed: {known}){broken}"
            ) from None

    def availability(self, backend: str) -> Availability:
        self.owner(backend)
        result = self.pm.hook.ript_check_available(backend=backend)
        return result if result is not None else Availability.ok()

    def require_available(self, backend: str) -> None:
        avail = self.availability(backend)
        if not avail.available:
            raise BackendUnavailableError(
                f"backend {backend!r} is not available: {avail.reason}\n  fix: {avail.install}"
            )

    def catalogue(self, backend: str) -> list[TaskInfo]:
        self.require_available(backend)
        tasks = self.pm.hook.ript_task_catalogue(backend=backend)
        if tasks is None:
            raise RuntimeError(
                f"plugin {self.owner(backend)!r} gave no task catalogue for {backend!r}"
            )
        return list(tasks)

    def task_info(self, backend: str, task: str) -> TaskInfo:
        tasks = {t.name: t for t in self.catalogue(backend)}
        if task not in tasks:
            raise KeyError(
                f"backend {backend!r} has no task {task!r}; `ript tasks {backend}` lists its "
                f"{len(tasks)} tasks (e.g. {', '.join(list(tasks)[:3])})"
            )
        return tasks[task]

    def make_env(self, backend: str, task: str, options: dict[str, Any] | None = None):
        self.task_info(backend, task)  # validates backend + task before any slow work
        env = self.pm.hook.ript_make_env(backend=backend, task=task, options=dict(options or {}))
        if env is None:
            raise RuntimeError(f"plugin {self.owner(backend)!r} built no env for {backend}/{task}")
        return env

    def default_adapters(self, backend: str, task: str, options: dict[str, Any] | None = None):
        self.require_available(backend)
        result = self.pm.hook.ript_default_adapters(
            backend=backend, task=task, options=dict(options or {})
        )
        if result is None:
            raise RuntimeError(f"plugin {self.owner(backend)!r} gives no default adapters")
        return result

    def scripted_expert(self, backend: str, task: str):
        self.task_info(backend, task)
        expert = self.pm.hook.ript_scripted_expert(backend=backend, task=task)
        if expert is None:
            raise RuntimeError(
                f"backend {backend!r} offers no scripted expert for {task!r}, so it cannot record "
                "demonstrations for a BC warm start; set bc.demos_per_task=0 or load a "
                "pretrained checkpoint"
            )
        return expert


_REGISTRY: PluginRegistry | None = None


def get_registry(reload: bool = False) -> PluginRegistry:
    """The process-wide registry, built on first use from the entry points."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = PluginRegistry()
        _REGISTRY.load_entry_points()
    return _REGISTRY


def split_env_id(env_id: str) -> tuple[str, str]:
    backend, sep, task = env_id.partition("/")
    if not sep or not backend or not task:
        raise ValueError(
            f"env id {env_id!r} must look like '<backend>/<task>', e.g. 'toy/reach-red'"
        )
    return backend, task


def make_env(env_id: str, **options: Any):
    """Build the env ``"<backend>/<task>"`` through its plugin."""
    backend, task = split_env_id(env_id)
    return get_registry().make_env(backend, task, options)


def iter_tasks(backend: str) -> Iterable[TaskInfo]:
    return get_registry().catalogue(backend)
