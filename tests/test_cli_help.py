"""Every option and argument of every built-in command says what it does."""

import argparse

from ript_core.cli.app import build_parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("the ript parser has no subcommands")


def test_every_option_has_help_text():
    missing = [
        f"ript {name} {'/'.join(a.option_strings) or a.dest}"
        for name, sub in subcommands(build_parser()).items()
        for a in sub._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()
    ]
    assert not missing, "options without help text:\n  " + "\n  ".join(missing)
