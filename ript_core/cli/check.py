"""``ript check-backend NAME``: the backend conformance check
(:func:`ript_core.envs.check_backend`) from the command line.

Exit status 0 when the backend keeps the contract, 1 when it does not (each
broken rule printed on its own line).
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from ript_core.cli.console import console
from ript_core.cli.registry import command
from ript_core.envs.options import add_env_option_argument, parse_env_options


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("backend", help="an installed backend, e.g. toy (`ript plugins` lists them)")
    p.add_argument("--task", help="the task whose env is checked (default: the catalogue's first)")
    add_env_option_argument(p)


@command(
    "check-backend",
    "check that a backend keeps ript-core's contract: catalogue, reproducible resets and "
    "trajectories, observations, adapters, options, expert",
    _check_args,
)
def cmd_check_backend(ns: argparse.Namespace) -> int:
    from ript_core.envs.conformance import check_backend

    problems = check_backend(ns.backend, ns.task, parse_env_options(ns.option), raise_errors=False)
    if problems:
        console.print(f"[red]backend {ns.backend!r} breaks the contract:[/red]")
        for problem in problems:
            console.print(f"  - {escape(problem)}", soft_wrap=True)
        return 1
    console.print(f"[green]backend {ns.backend!r} keeps the contract[/green]")
    return 0
