"""The whole plugin contract of ript-core.

A backend plugin is a module (or object) that implements some of the hooks
below with ``@ript_core.hookimpl`` and is announced through the Python entry
point group ``ript_core.plugins``::

    # your plugin's pyproject.toml
    [project.entry-points."ript_core.plugins"]
    mysim = "ript_mysim.plugin"

The built-in backends (``toy``, and ``libero``/``maniskill``/... when their
extras are installed) are registered through that same group; nothing about a
third-party plugin is second class.

Every per-backend hook takes the backend name first and is ``firstresult``:
a plugin answers for the backends it owns and returns ``None`` otherwise.
One plugin may provide several backends.

Set ``RIPT_TRACE_HOOKS=1`` to print every hook call and result to stderr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import gymnasium as gym

    from ript_core.envs.catalogue import Availability, TaskInfo
    from ript_core.envs.interfaces import ActionAdapter, ObservationAdapter

PROJECT = "ript_core"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def ript_backends() -> list[str]:
    """Return the names of the backends this plugin provides (e.g. ``["libero"]``).

    Called at discovery; must be cheap and must not import the simulator.
    Names are lowercase identifiers, unique across installed plugins.
    """


@hookspec(firstresult=True)
def ript_check_available(backend: str) -> Availability | None:
    """Say whether ``backend`` can run on this machine.

    Return ``Availability.missing(reason, install)`` when its simulator (or a
    renderer, a driver...) is missing, with ``install`` the exact command that
    fixes it, e.g. ``pip install "ript-core[libero]"``. Must not raise and must
    not build an env: ``ript plugins`` calls it for every backend.
    """


@hookspec(firstresult=True)
def ript_task_catalogue(backend: str) -> list[TaskInfo] | None:
    """Return every task of ``backend``: name, instruction, number of
    registered init states, max steps, suite, settle steps and no-op action.

    The RIPT context sampler draws (task, init state) pairs from this list.
    """


@hookspec(firstresult=True)
def ript_make_env(backend: str, task: str, options: dict[str, Any]) -> gym.Env | None:
    """Build one ``gymnasium.Env`` for ``task`` of ``backend``.

    The env must honour the contract checked by
    ``ript_core.envs.validation.validate_observation``:

    - observations are dicts: ``"images"`` (camera -> ``HxWx3 uint8``),
      ``"state"`` (1-D float proprio vector), ``"instruction"`` (str);
    - ``info["success"]`` (bool) after every ``reset`` and ``step``;
    - ``reset(seed=s, options={"init_state": i})`` puts the env in registered
      init state ``i``, reproducibly: the same ``(i, s)`` gives the same first
      observation whatever the env did before.

    ``options`` carries backend-specific settings from the user's config
    (image size, render backend, ...); reject unknown ones with a clear error.
    Envs are built inside rollout worker processes, so this hook may be slow
    but must not touch the policy device.
    """


@hookspec(firstresult=True)
def ript_default_adapters(
    backend: str, task: str, options: dict[str, Any]
) -> tuple[ObservationAdapter, ActionAdapter] | None:
    """Return the ``(observation_adapter, action_adapter)`` that translate
    between this backend's envs and a PI0-style policy (see
    ``ript_core.envs.interfaces``). ``options`` is the same dict
    ``ript_make_env`` received.
    """


@hookspec(firstresult=True)
def ript_scripted_expert(backend: str, task: str) -> Any | None:
    """Optional. Return a scripted expert for ``task``: a callable
    ``expert(env, rng) -> action`` that reads the (unwrapped) env's
    privileged state and returns the env action to take. ript-core uses it to
    record demonstrations for a BC warm start. Return ``None`` (or do not
    implement the hook) when the backend has none.

    Its actions are in env units; the policy learns them as its (un-normalised)
    action targets, so backends whose action adapter does more than slice and
    clip should not offer an expert.
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
