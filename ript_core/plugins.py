"""Discovering backend plugins and asking their specs.

Plugins come from the entry point group ``ript_core.plugins`` (built-ins
included); each hands over :class:`~ript_core.envs.spec.BackendSpec` objects
through its ``ript_backends()`` hook, and the registry keys them by name.
pluggy's own ``load_setuptools_entrypoints`` stops at the first plugin that
fails to import; we load each entry point ourselves so that one broken plugin
is reported by name, with the command that fixes it, while the others keep
working.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

import attrs
import pluggy

from ript_core import hookspecs
from ript_core.envs.catalogue import Availability, TaskInfo
from ript_core.envs.spec import BackendFootprint, BackendSpec, Expert, check_expert

ENTRY_POINT_GROUP = "ript_core.plugins"
TRACE_ENV_VAR = "RIPT_TRACE_HOOKS"
#: the backend that ships inside ript-core (ript_core/envs/toy): the default
#: wherever a command's backend is optional
BUILTIN_BACKEND = "toy"

log = logging.getLogger(__name__)


class BackendNotFoundError(KeyError):
    def __str__(self) -> str:  # KeyError would print the repr
        return str(self.args[0])


class BackendUnavailableError(RuntimeError):
    pass


class PluginContractError(TypeError):
    """A plugin's ``ript_backends()`` returned something that is not a backend spec."""


@attrs.frozen
class BrokenPlugin:
    """An entry point that could not be loaded."""

    name: str
    distribution: str
    error: str
    install: str


def _install_hint(ep: metadata.EntryPoint, exc: BaseException) -> str:
    """The command that fixes a plugin that failed to import."""
    dist = ep.dist
    extras = (dist.metadata.get_all("Provides-Extra") or []) if dist is not None else []
    if dist is not None and ep.name in extras:
        return f'pip install "{dist.name}[{ep.name}]" (from a clone: pip install -e ".[{ep.name}]")'
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    plugin_package = ep.value.split(":")[0].split(".")[0]
    if missing and missing.split(".")[0] != plugin_package:
        # the plugin imports a simulator SDK (or another dependency) that is not installed
        owner = f"plugin package {dist.name}" if dist is not None else f"entry point {ep.value!r}"
        return f"install the module {missing!r} that the {owner} imports"
    if dist is None:
        return f"reinstall the package that provides entry point {ep.value!r}"
    return f"pip install --force-reinstall {dist.name}"


def _error_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


class PluginRegistry:
    """The installed backends by name, with the bookkeeping ``ript plugins`` shows."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.broken: list[BrokenPlugin] = []
        self._specs: dict[str, BackendSpec] = {}
        self._backend_owner: dict[str, str] = {}
        self._trace = self.pm.trace.root.get("spec")
        self._tracing = bool(os.environ.get(TRACE_ENV_VAR))
        if self._tracing:
            self.pm.trace.root.setwriter(lambda msg: sys.stderr.write(f"[ript hooks] {msg}"))
            self.pm.enable_tracing()

    # -- registration -----------------------------------------------------------------
    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        for ep in metadata.entry_points(group=group):
            if self.pm.get_plugin(ep.name) is not None:
                continue
            distribution = ep.dist.name if ep.dist else "?"
            try:
                plugin = ep.load()
            except Exception as exc:  # any import-time failure is the plugin's, not ours
                self.broken.append(
                    BrokenPlugin(ep.name, distribution, _error_line(exc), _install_hint(ep, exc))
                )
                continue
            try:
                self.register(plugin, name=ep.name)
            except PluginContractError as exc:
                self.broken.append(
                    BrokenPlugin(
                        ep.name, distribution, _error_line(exc), f"pip install -U {distribution}"
                    )
                )

    def register(self, plugin: Any, name: str) -> None:
        """Register a plugin object or module (also how tests add one in-process)."""
        self.pm.register(plugin, name=name)
        try:
            specs = self._plugin_specs(plugin, name)
            for spec in specs:
                owner = self._backend_owner.get(spec.name)
                if owner is not None and owner != name:
                    raise ValueError(
                        f"plugin {name!r} declares backend {spec.name!r}, already provided by "
                        f"plugin {owner!r}; uninstall one of them"
                    )
        except Exception:
            self.pm.unregister(plugin)
            raise
        for spec in specs:
            self._specs[spec.name] = spec
            self._backend_owner[spec.name] = name

    def _plugin_specs(self, plugin: Any, name: str) -> list[BackendSpec]:
        impl = getattr(plugin, "ript_backends", None)
        if impl is None:
            return []
        specs = list(self._traced(f"{name}.ript_backends", impl) or [])
        for spec in specs:
            if not isinstance(spec, BackendSpec):
                raise PluginContractError(
                    f"plugin {name!r}: ript_backends() must return ript_core.BackendSpec "
                    f"objects, got {spec!r} (see docs/writing-a-plugin.md)"
                )
            if not isinstance(spec.name, str) or not (
                spec.name.isidentifier() and spec.name == spec.name.lower()
            ):
                raise PluginContractError(
                    f"plugin {name!r}: {type(spec).__name__}.name must be a lowercase "
                    f"identifier, got {spec.name!r}"
                )
        return specs

    def _traced(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, printed with its result under ``RIPT_TRACE_HOOKS=1``."""
        if not self._tracing:
            return fn(*args)
        self._trace(f"{what}({', '.join(map(repr, args))})")
        result = fn(*args)
        self._trace(f"{what} -> {result!r}")
        return result

    # -- queries -------------------------------------------------------------------
    def backends(self) -> list[str]:
        return sorted(self._specs)

    def owner(self, backend: str) -> str:
        """The name of the plugin that provides ``backend``."""
        self.spec(backend)
        return self._backend_owner[backend]

    def spec(self, backend: str) -> BackendSpec:
        try:
            return self._specs[backend]
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
        spec = self.spec(backend)
        try:
            return self._traced(f"{backend}.availability", spec.availability)
        except Exception as exc:  # the contract says it must not raise: report, do not crash
            return Availability.missing(
                f"its availability check raised {_error_line(exc)}",
                spec.install_hint or f"reinstall the plugin {self.owner(backend)!r}",
            )

    def require_available(self, backend: str) -> None:
        avail = self.availability(backend)
        if not avail.available:
            raise BackendUnavailableError(
                f"backend {backend!r} is not available: {avail.reason}\n  fix: {avail.install}"
            )

    def catalogue(self, backend: str) -> list[TaskInfo]:
        self.require_available(backend)
        tasks = self._traced(f"{backend}.catalogue", self._specs[backend].catalogue)
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

    def check_options(self, backend: str, options: dict[str, Any] | None) -> dict[str, Any]:
        """The backend's env options with ``options`` applied; bad ones raise ``ValueError``."""
        return self.spec(backend).check_options(dict(options or {}))

    def make_env(self, backend: str, task: str, options: dict[str, Any] | None = None):
        self.task_info(backend, task)  # validates backend + task before any slow work
        spec = self._specs[backend]
        env = self._traced(
            f"{backend}.make_env", spec.make_env, task, self.check_options(backend, options)
        )
        if env is None:
            raise RuntimeError(f"plugin {self.owner(backend)!r} built no env for {backend}/{task}")
        return env

    def make_settled_env(self, backend: str, task: str, options: dict[str, Any] | None = None):
        """:meth:`make_env`, wrapped so that every reset runs the task's settle steps."""
        from ript_core.envs.wrappers import SettleOnReset

        info = self.task_info(backend, task)
        return SettleOnReset.for_task(self.make_env(backend, task, options), info)

    def default_adapters(self, backend: str, task: str, options: dict[str, Any] | None = None):
        self.require_available(backend)
        # the same options the env gets: a bad one fails here, before any worker starts
        checked = self.check_options(backend, options)
        result = self._traced(
            f"{backend}.default_adapters", self._specs[backend].default_adapters, task, checked
        )
        if result is None:
            raise RuntimeError(f"plugin {self.owner(backend)!r} gives no default adapters")
        return result

    def scripted_expert(self, backend: str, task: str) -> Expert:
        self.task_info(backend, task)
        expert = self._traced(
            f"{backend}.scripted_expert", self._specs[backend].scripted_expert, task
        )
        if expert is None:
            raise RuntimeError(
                f"backend {backend!r} offers no scripted expert for {task!r}, so it cannot record "
                "demonstrations for a BC warm start; set bc.demos_per_task=0 or load a "
                "pretrained checkpoint"
            )
        return check_expert(backend, task, expert)

    def footprint(self, backend: str) -> BackendFootprint:
        """The planner's per-env cost of ``backend``; a heavy simulator's when
        its spec declares none (logged, since the plan may then be pessimistic)."""
        footprint = self.spec(backend).footprint
        if footprint is None:
            footprint = BackendFootprint.heavy(backend)
            log.warning(
                "backend %r declares no footprint; planning as for a heavy simulator "
                "(%.1f GB and %.2f s per env step)",
                backend,
                footprint.env_ram_bytes / 1e9,
                footprint.env_step_seconds,
            )
        return footprint


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
