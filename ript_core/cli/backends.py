"""``ript plugins``, ``ript tasks`` and ``ript expert``: what the installed
backends offer."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from ript_core.cli.console import console
from ript_core.cli.registry import command
from ript_core.plugins import BUILTIN_BACKEND, get_registry


@command("plugins", "list backend plugins, their task counts and whether they can run here")
def cmd_plugins(ns: argparse.Namespace) -> int:
    reg = get_registry()
    table = Table(title="ript-core backends")
    for col in ("backend", "plugin", "tasks", "status"):
        table.add_column(col)
    for backend in reg.backends():
        avail = reg.availability(backend)
        if avail.available:
            n_tasks = str(len(reg.catalogue(backend)))
            status = "[green]available[/green]"
        else:
            n_tasks = "-"
            # escape: rich would eat "[libero]" in `pip install "ript-core[libero]"` as markup
            status = (
                f"[red]unavailable[/red]: {escape(avail.reason)}\n  fix: {escape(avail.install)}"
            )
        table.add_row(backend, reg.owner(backend), n_tasks, status)
    for broken in reg.broken:
        table.add_row(
            broken.name,
            broken.distribution,
            "-",
            f"[red]failed to load[/red]: {escape(broken.error)}\n  fix: {escape(broken.install)}",
        )
    console.print(table)
    return 0


def _tasks_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("backend", help="a backend name, as `ript plugins` lists them")


@command("tasks", "list a backend's tasks", _tasks_args)
def cmd_tasks(ns: argparse.Namespace) -> int:
    reg = get_registry()
    table = Table(title=f"{ns.backend} tasks")
    for col in ("task", "suite", "init states", "max steps", "instruction"):
        table.add_column(col)
    for t in reg.catalogue(ns.backend):
        # scenes an operator sets up by hand are not exact init states: say so
        inits = str(t.n_init_states) + ("" if t.exact_reset else " (not exact)")
        table.add_row(t.name, t.suite, inits, str(t.max_steps), t.instruction)
    console.print(table)
    return 0


def _expert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "backend",
        nargs="?",
        default=BUILTIN_BACKEND,
        help=f"a backend with a scripted expert (default: {BUILTIN_BACKEND})",
    )
    p.add_argument(
        "--episodes-per-task", type=int, default=50, help="expert episodes per task (default 50)"
    )


@command("expert", "run a backend's scripted expert and print its success rate", _expert_args)
def cmd_expert(ns: argparse.Namespace) -> int:
    from ript_core.envs.expert import run_expert_episode

    reg = get_registry()
    total = wins = 0
    for task in reg.catalogue(ns.backend):
        expert = reg.scripted_expert(ns.backend, task.name)
        env = reg.make_settled_env(ns.backend, task.name)
        n = min(ns.episodes_per_task, task.n_init_states)
        try:
            ok = sum(run_expert_episode(env, expert, i, seed=i)[2] for i in range(n))
        finally:
            env.close()
        console.print(f"{ns.backend}/{task.name}: {ok}/{n}")
        total += n
        wins += ok
    console.print(f"scripted expert success rate: {wins / total:.1%} ({wins}/{total})")
    return 0
