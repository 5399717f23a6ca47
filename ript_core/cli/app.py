"""The ``ript`` command line: its parser and :func:`main`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

# Each topic module adds its commands to BUILTIN when imported, in this order
# (the order of `ript --help`); their bodies import the library lazily, so
# building the parser imports no torch.
# isort: off
from ript_core.cli import backends, check, plan, train, debug, checkpoints, export, serve  # noqa: F401

# isort: on
from ript_core.cli.console import console
from ript_core.cli.registry import BUILTIN, CommandRegistry


def all_commands() -> CommandRegistry:
    """The built-in commands, then those each plugin adds through the hook
    ``ript_register_commands``."""
    from ript_core.plugins import get_registry

    commands = BUILTIN.copy()
    hook = get_registry().pm.hook.ript_register_commands
    for impl in hook.get_hookimpls():
        # one at a time, so each command is credited to its plugin and a broken
        # plugin leaves every other command (`ript plugins` above all) working
        commands.owner = impl.plugin_name
        try:
            impl.function(*[{"commands": commands}[name] for name in impl.argnames])
        except Exception as exc:
            print(
                f"ript: plugin {impl.plugin_name!r} could not add its commands: {exc}",
                file=sys.stderr,
            )
    return commands


def build_parser(commands: CommandRegistry | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ript",
        description="RL post-training (RIPT) for PI0 vision-language-action policies.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in commands if commands is not None else all_commands():
        # argparse %-formats help strings (not descriptions): "95% c..." would crash --help
        p = sub.add_parser(
            cmd.name,
            help=cmd.help.replace("%", "%%"),
            description=cmd.help,
            aliases=list(cmd.aliases),
        )
        cmd.arguments(p)
        p.set_defaults(func=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except (KeyError, ValueError, RuntimeError) as exc:
        # user-facing errors carry their fix in the message; no traceback
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
