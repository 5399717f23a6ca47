"""The whole plugin contract of ript-core.

A plugin is a module (or object) that implements the hooks below with
``@ript_core.hookimpl`` and is announced through the Python entry point group
``ript_core.plugins``::

    # your plugin's pyproject.toml
    [project.entry-points."ript_core.plugins"]
    mysim = "ript_mysim.plugin"

    # ript_mysim/plugin.py
    from ript_core import BackendSpec, hookimpl

    class MySimSpec(BackendSpec):
        name = "mysim"
        ...

    @hookimpl
    def ript_backends():
        return [MySimSpec()]

The built-in backends (``toy``, and ``libero``/``maniskill``/... when their
extras are installed) are registered through that same group; nothing about a
third-party plugin is second class.

**Backends are objects.** ``ript_backends()`` is the one backend hook: it
hands over :class:`ript_core.BackendSpec` instances, and everything else
about a backend (availability, task catalogue, env factory, env options,
default adapters, scripted expert, the planner's footprint) is a method or
attribute of its spec, asked only of that spec. One plugin may provide several
backends; a backend name claimed by two plugins is an error naming both.
``ript_core.envs.check_backend`` (``ript check-backend NAME``) checks a spec
against the contract; ``docs/writing-a-plugin.md`` walks through a plugin.

Set ``RIPT_TRACE_HOOKS=1`` to print every hook call and every call the
registry makes on a spec to stderr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ript_core.envs.spec import BackendSpec

PROJECT = "ript_core"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def ript_backends() -> list[BackendSpec]:
    """Return the backends this plugin provides, one :class:`BackendSpec` each.

    Called once per plugin at discovery (``ript plugins`` included), so it
    must be cheap and must not import the simulator: a spec imports it in
    ``make_env``. Spec names are lowercase identifiers, unique across the
    installed plugins. A backend whose simulator is missing is still returned;
    its ``availability()`` says what is missing and the command that fixes it.
    """


# ---- CLI commands --------------------------------------------------------------------


@hookspec
def ript_register_commands(commands: Any) -> None:
    """Optional. Add ``ript`` sub-commands (the way datasette's
    ``register_commands`` does). ``commands`` is a
    ``ript_core.cli.CommandRegistry``; call
    ``commands.add(name, run, help, arguments=None)`` once per command:
    ``arguments(parser)`` adds its options to an ``argparse`` parser and
    ``run(namespace) -> int`` is its body and exit status.

    Called whenever ``ript`` builds its parser, even for ``ript --help``: keep
    module-level imports light and import heavy libraries inside ``run``. A
    name already taken is refused with a warning; the other commands keep
    working.
    """
