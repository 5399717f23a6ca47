"""A backend as one object: what a plugin hands to ript-core.

Like gymnasium's ``EnvSpec`` + ``make``: a plugin's ``ript_backends()`` hook
returns :class:`BackendSpec` instances; the registry keys them by ``name`` and
asks each spec only about its own backend (no "is this mine?" guards).
A spec must be cheap to build and must not import its simulator: discovery
(``ript plugins``) builds every installed spec.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from ript_core.envs.catalogue import Availability, TaskInfo
from ript_core.envs.options import check_env_options

if TYPE_CHECKING:
    import gymnasium as gym

    from ript_core.envs.interfaces import ActionAdapter, ObservationAdapter

GB = 1_000_000_000  # decimal, as the planner and its command-line flags count

# A scripted expert: ``expert(env, rng, noise) -> action``. It reads the
# unwrapped env's privileged state and returns the env action to take; ``rng``
# (a numpy Generator) draws its motion noise, ``noise`` is that noise's std.
Expert = Callable[["gym.Env", np.random.Generator, float], np.ndarray]


class ExpertSignatureError(TypeError):
    """A backend's scripted expert cannot be called as ``expert(env, rng, noise)``."""


def check_expert(backend: str, task: str, expert: Any) -> Expert:
    """``expert`` itself, once it is known to take ``(env, rng, noise)``.

    Raises :class:`ExpertSignatureError` naming the backend and the task, so a
    wrong signature fails when the expert is handed over, not as a bare
    ``TypeError`` deep inside a demo recording.
    """
    if not callable(expert):
        raise ExpertSignatureError(
            f"backend {backend!r}: the scripted expert for {task!r} is "
            f"{type(expert).__name__}, not a callable expert(env, rng, noise) -> action"
        )
    try:
        inspect.signature(expert).bind(None, None, 0.0)
    except TypeError as exc:
        raise ExpertSignatureError(
            f"backend {backend!r}: the scripted expert for {task!r} must be callable as "
            f"expert(env, rng, noise) -> action; {getattr(expert, '__name__', expert)!s}"
            f"{inspect.signature(expert)} does not accept that ({exc})"
        ) from None
    except ValueError:  # no signature to inspect (some builtins): trust it
        pass
    return expert


@attrs.frozen
class BackendFootprint:
    """Per-env cost of a backend, for the memory-aware planner.

    ``env_ram_bytes`` is one env worker process's resident memory (interpreter,
    simulator, renderer, one env), never a model; ``env_step_seconds`` one
    ``env.step`` with observations rendered; ``unread_step_seconds`` one step
    whose observation nobody reads, for an env that skips rendering it
    (``ript_core.envs.unread``; None: as a rendered step); ``cores_per_env``
    how many cores one stepping env keeps busy. ``docs/planner.md`` says how
    they are measured.
    """

    name: str
    env_ram_bytes: int
    env_step_seconds: float
    cores_per_env: float = 1.0
    unread_step_seconds: float | None = None

    def chunk_seconds(self, replan_every: int) -> float:
        """One chunk of ``replan_every`` env steps: only its last observation
        is read, so only that step pays for rendering when the env can skip."""
        unread = self.unread_step_seconds
        if unread is None:
            unread = self.env_step_seconds
        return self.env_step_seconds + (replan_every - 1) * unread

    @classmethod
    def heavy(cls, name: str) -> BackendFootprint:
        """What the planner assumes for a backend that declares no footprint:
        a heavy CPU simulator with rendered cameras (1 GB, 0.19 s a step)."""
        return cls(name, 1 * GB, 0.19)


class BackendSpec:
    """One simulator (or robot) backend. Subclass it and override what differs.

    Required: ``name``, :meth:`catalogue`, :meth:`make_env`,
    :meth:`default_adapters`. Optional: :meth:`availability` (default: always
    available), ``env_options`` (name -> default; checked by
    :meth:`check_options`), :meth:`scripted_expert`, ``footprint``,
    ``install_hint``. ``ript_core.envs.check_backend`` checks a spec against
    this contract; ``docs/writing-a-plugin.md`` walks through one.
    """

    #: lowercase identifier, unique across installed plugins
    name: str = ""
    #: the env options the backend accepts (``env.options`` in a config), name -> default
    env_options: Mapping[str, Any] = {}
    #: ``image_size`` bounds (pixels per side, inclusive) when ``env_options`` has one
    image_size_range: tuple[int, int] = (16, 1024)
    #: the planner's per-env cost; None: the planner assumes a heavy simulator
    footprint: BackendFootprint | None = None
    #: the exact command that installs what this backend needs
    install_hint: str = ""
    #: the most envs that can run at once (None: no limit); a physical robot is 1
    max_env_workers: int | None = None
    #: its envs prompt an operator on this terminal: they run in the main
    #: process (worker processes have no stdin), one at a time
    operator_prompts: bool = False
    #: every finished training episode is kept on disk as it ends and a resumed
    #: run takes the recorded ones instead of running them again
    #: (``ript_core.rollout.journal``): for backends whose episodes cost a
    #: person's time or wear a machine
    journal_episodes: bool = False

    def availability(self) -> Availability:
        """Whether this backend can run here; when not, why and the exact fix.

        Must not raise and must not build an env (``ript plugins`` calls it
        for every backend): check for modules with ``importlib.util.find_spec``.
        """
        return Availability.ok()

    def catalogue(self) -> list[TaskInfo]:
        """Every task: name, instruction, registered init states, max steps,
        suite, settle steps and no-op action. The RIPT context sampler draws
        (task, init state) pairs from it."""
        raise NotImplementedError(f"backend {self.name!r} defines no catalogue()")

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``env_options`` updated with ``options``; unknown or mistyped ones
        raise ``ValueError`` naming the backend and the option."""
        return check_env_options(
            self.name, options, self.env_options, image_size_range=self.image_size_range
        )

    def make_env(self, task: str, options: dict[str, Any]) -> gym.Env:
        """Build one env for ``task`` (in a worker process; may be slow, must
        not touch the policy's device). Import the simulator here, lazily.

        The env contract: observation dicts with ``"images"`` (camera ->
        ``HxWx3 uint8``), ``"state"`` (1-D float, finite) and
        ``"instruction"`` (str); ``info["success"]`` (bool) after every reset
        and step; ``reset(seed=s, options={"init_state": i})`` puts the env in
        registered init state ``i``, the same first observation for the same
        ``(i, s)`` whatever the env did before. ``options`` has been through
        :meth:`check_options` (all declared options present). Optional: a
        ``skip_next_observation()`` method lets the env skip rendering
        observations nobody reads (``ript_core.envs.unread``).
        """
        raise NotImplementedError(f"backend {self.name!r} defines no make_env()")

    def default_adapters(
        self, task: str, options: dict[str, Any]
    ) -> tuple[ObservationAdapter, ActionAdapter]:
        """``(observation_adapter, action_adapter)`` between this backend's
        envs and a PI0-style policy; ``options`` as :meth:`make_env` got them."""
        raise NotImplementedError(f"backend {self.name!r} defines no default_adapters()")

    def scripted_expert(self, task: str) -> Expert | None:
        """Optional: the scripted expert of ``task``, or None.

        ``expert(env, rng, noise) -> action``: ``env`` is the unwrapped env
        (privileged state), ``rng`` a ``numpy.random.Generator`` for its motion
        noise, ``noise`` that noise's std; it returns the env action. ript-core
        records BC demonstrations with it. Its actions are in env units and the
        policy learns them as its targets, so a backend whose action adapter
        does more than slice and clip should not offer one.
        """
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def first_missing_module(modules: Iterable[str]) -> str | None:
    """The first of ``modules`` that is not installed, found without importing
    it (what a spec's :meth:`~BackendSpec.availability` checks), or None."""
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except (ImportError, ValueError):  # a parent package hidden or half-installed
            return module
    return None
