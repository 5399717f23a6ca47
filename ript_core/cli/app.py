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
from rich.markup import escape

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


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, except that ``key=value`` overrides may come after
    flags too (``ript train cfg.yaml --resume optim.lr=1e-5``): argparse stops
    filling a ``nargs="*"`` positional at the first flag."""
    ns, extra = parser.parse_known_args(argv)
    late = [a for a in extra if "=" in a and not a.startswith("-")]
    unknown = [a for a in extra if a not in late]
    if late and isinstance(getattr(ns, "overrides", None), list):
        ns.overrides.extend(late)
    else:
        unknown = extra
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return ns


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse(build_parser(), argv)
    try:
        return ns.func(ns)
    except (KeyError, ValueError, RuntimeError) as exc:
        # user-facing errors carry their fix in the message; no traceback. Escaped:
        # rich would read an install hint's "[libero]" as markup and drop it
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
