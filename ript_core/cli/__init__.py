"""The ``ript`` command line. It sits on top: it imports the library (lazily,
inside each command's body), and nothing in the library imports it."""

from ript_core.cli.app import build_parser, main
from ript_core.cli.console import console
from ript_core.cli.registry import Command, CommandError, CommandRegistry

__all__ = ["Command", "CommandError", "CommandRegistry", "build_parser", "console", "main"]
