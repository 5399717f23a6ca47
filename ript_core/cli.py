"""The ``ript`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ript_core.envs import check_command
from ript_core.plugins import get_registry

console = Console()

Command = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Command, Callable[[argparse.ArgumentParser], None], str]] = {}


def command(name: str, help: str, args: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    def register(fn: Command) -> Command:
        COMMANDS[name] = (fn, args, help)
        return fn

    return register


command(check_command.NAME, check_command.HELP, check_command.arguments)(check_command.run)


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
    p.add_argument("backend")


@command("tasks", "list a backend's tasks", _tasks_args)
def cmd_tasks(ns: argparse.Namespace) -> int:
    reg = get_registry()
    table = Table(title=f"{ns.backend} tasks")
    for col in ("task", "suite", "init states", "max steps", "instruction"):
        table.add_column(col)
    for t in reg.catalogue(ns.backend):
        table.add_row(t.name, t.suite, str(t.n_init_states), str(t.max_steps), t.instruction)
    console.print(table)
    return 0


def _expert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes-per-task", type=int, default=50)


@command("expert", "run the toy backend's scripted expert and print its success rate", _expert_args)
def cmd_expert(ns: argparse.Namespace) -> int:
    from ript_core.envs.toy.expert import run_expert_episode

    reg = get_registry()
    total = wins = 0
    for task in reg.catalogue("toy"):
        env = reg.make_env("toy", task.name)
        n = min(ns.episodes_per_task, task.n_init_states)
        ok = sum(run_expert_episode(env, i, seed=i)[2] for i in range(n))
        console.print(f"toy/{task.name}: {ok}/{n}")
        total += n
        wins += ok
    console.print(f"scripted expert success rate: {wins / total:.1%} ({wins}/{total})")
    return 0


def _load_command_modules() -> None:
    """Commands that live beside the code they drive register themselves here."""
    import importlib

    for module in (
        "ript_core.rollout.plan_command",
        "ript_core.rl.commands",
        "ript_core.debug.commands",
        "ript_core.policy.commands",
        "ript_core.policy.export_command",
    ):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def build_parser() -> argparse.ArgumentParser:
    _load_command_modules()
    parser = argparse.ArgumentParser(
        prog="ript",
        description="RL post-training (RIPT) for PI0 vision-language-action policies.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (fn, add_args, help_text) in COMMANDS.items():
        # argparse %-formats help strings (not descriptions): "95% c..." would crash --help
        p = sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text)
        add_args(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except (KeyError, ValueError, RuntimeError) as exc:
        # user-facing errors carry their fix in the message; no traceback
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2


if __name__ == "__main__":
    # run through the canonical module so that command modules register into it
    from ript_core.cli import main as canonical_main

    sys.exit(canonical_main())
