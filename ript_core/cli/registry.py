"""The commands of ``ript``: the built-in ones and those plugins add.

A plugin adds commands through the hook ``ript_register_commands(commands)``
(ript_core.hookspecs): it receives a :class:`CommandRegistry` and calls
:meth:`CommandRegistry.add`. Built-in commands register the same way, through
the :func:`command` decorator on the built-in registry.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

import attrs

#: a command's body: the parsed arguments in, the exit status out
Run = Callable[[argparse.Namespace], int]
#: adds a command's arguments to its sub-parser
Arguments = Callable[[argparse.ArgumentParser], None]


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    pass


@attrs.frozen
class Command:
    name: str
    run: Run
    help: str
    arguments: Arguments = _no_arguments
    owner: str = "ript-core"
    aliases: tuple[str, ...] = ()  # older names that keep working


class CommandError(ValueError):
    """A command that cannot be added (its name is taken or malformed)."""


class CommandRegistry:
    """Commands by name, in the order they were added."""

    def __init__(self, owner: str = "ript-core") -> None:
        self._commands: dict[str, Command] = {}
        self.owner = owner  # who the next :meth:`add` is credited to

    def add(
        self,
        name: str,
        run: Run,
        help: str,
        arguments: Arguments | None = None,
        aliases: tuple[str, ...] = (),
    ) -> None:
        """Add ``ript NAME``: ``help`` is its one-line description, ``arguments``
        adds its options to an ``argparse`` parser, ``run(namespace)`` returns the
        exit status. Import heavy libraries inside ``run``, not at module level,
        so that ``ript --help`` stays instant."""
        for n in (name, *aliases):
            if not n or n.startswith("-") or " " in n:
                raise CommandError(f"{n!r} is not a command name")
            taken = next((c for c in self if n in (c.name, *c.aliases)), None)
            if taken is not None:
                raise CommandError(f"command {n!r} is already provided by {taken.owner!r}")
        self._commands[name] = Command(
            name, run, help, arguments or _no_arguments, self.owner, tuple(aliases)
        )

    def command(
        self,
        name: str,
        help: str,
        arguments: Arguments | None = None,
        aliases: tuple[str, ...] = (),
    ):
        """:meth:`add` as a decorator on the command's body."""

        def register(run: Run) -> Run:
            self.add(name, run, help, arguments, aliases)
            return run

        return register

    def copy(self) -> CommandRegistry:
        other = CommandRegistry(self.owner)
        other._commands = dict(self._commands)
        return other

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __getitem__(self, name: str) -> Command:
        return self._commands[name]


#: the commands that ship with ript-core (the modules of this package fill it)
BUILTIN = CommandRegistry()
command = BUILTIN.command
