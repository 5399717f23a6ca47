"""Plugins add ``ript`` commands through the hook ``ript_register_commands``."""

from __future__ import annotations

import pytest

from ript_core import get_registry, hookimpl
from ript_core.cli import main


class GreeterPlugin:
    """A plugin that adds ``ript greet NAME [--shout]``."""

    @hookimpl
    def ript_register_commands(self, commands):
        def arguments(parser):
            parser.add_argument("name")
            parser.add_argument("--shout", action="store_true")

        def run(ns):
            text = f"hello, {ns.name}"
            print(text.upper() if ns.shout else text)
            return 3 if ns.name == "nobody" else 0

        commands.add("greet", run, "say hello (100% friendly)", arguments)


class SquatterPlugin:
    """Takes a built-in name first, then adds a command of its own."""

    @hookimpl
    def ript_register_commands(self, commands):
        commands.add("train", lambda ns: 0, "not the real train")


class BrokenPlugin:
    @hookimpl
    def ript_register_commands(self, commands):
        raise ImportError("no module named 'somesim'")


@pytest.fixture
def plugin():
    """Registers plugin objects in the process-wide registry, and removes them after."""
    reg = get_registry()
    names = []

    def add(obj, name):
        reg.register(obj, name=name)
        names.append(name)

    yield add
    for name in names:
        reg.pm.unregister(name=name)


def test_a_plugin_adds_a_command_with_arguments(plugin, capsys):
    plugin(GreeterPlugin(), "greeter")
    assert main(["greet", "world"]) == 0
    assert capsys.readouterr().out == "hello, world\n"
    assert main(["greet", "world", "--shout"]) == 0
    assert capsys.readouterr().out == "HELLO, WORLD\n"
    assert main(["greet", "nobody"]) == 3  # the command's exit status is ript's
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "greet" in out and "100% friendly" in out


def test_a_taken_name_or_a_broken_plugin_leaves_every_other_command_working(plugin, capsys):
    plugin(SquatterPlugin(), "squatter")
    plugin(BrokenPlugin(), "broken-commands")
    plugin(GreeterPlugin(), "greeter")
    assert main(["tasks", "toy"]) == 0
    captured = capsys.readouterr()
    assert "pick up the yellow block" in captured.out
    assert "plugin 'squatter' could not add its commands: command 'train' is already " in (
        captured.err
    )
    assert "plugin 'broken-commands' could not add its commands: no module named" in captured.err
    assert main(["greet", "you"]) == 0
    assert "hello, you" in capsys.readouterr().out


def test_commands_are_credited_to_their_plugin():
    from ript_core.cli.app import all_commands

    reg = get_registry()
    reg.register(GreeterPlugin(), name="greeter")
    try:
        commands = all_commands()
    finally:
        reg.pm.unregister(name="greeter")
    assert commands["greet"].owner == "greeter"
    assert commands["train"].owner == "ript-core"
    assert "greet" not in all_commands()


def test_an_alias_is_a_taken_name_too():
    from ript_core.cli.registry import CommandError, CommandRegistry

    reg = CommandRegistry()
    reg.add("record-demos", lambda ns: 0, "record", aliases=("demos",))
    with pytest.raises(CommandError, match="'demos' is already provided by 'ript-core'"):
        reg.add("demos", lambda ns: 0, "another")
    with pytest.raises(CommandError, match="'record-demos' is already provided"):
        reg.add("record", lambda ns: 0, "another", aliases=("record-demos",))
