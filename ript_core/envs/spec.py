"""A backend as one object: what a plugin hands to ript-core.

Like gymnasium's ``EnvSpec`` + ``make``: a plugin's ``ript_backends()`` hook
returns :class:`BackendSpec` instances; the registry keys them by ``name`` and
asks each spec only about its own backend (no "is this mine?" guards).
A spec must be cheap to build and must not import its simulator: discovery
(``ript plugins``) builds every installed spec.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from ript_core.envs.catalogue import Availability, TaskInfo
from ript_core.envs.options import check_env_options

if TYPE_CHECKING:
    import gymnasium as gym

    from ript_core.envs.interfaces import ActionAdapter, ObservationAdapter

GB = 1024**3

# A scripted expert: reads the unwrapped env's privileged state and returns
# the env action to take; ``rng`` draws its motion noise (``noise`` = its std).
Expert = Callable[["gym.Env", np.random.Generator, float], np.ndarray]


@attrs.frozen
class BackendFootprint:
    """Per-env cost of a backend, for the memory-aware planner.

    ``env_ram_bytes`` is one env worker process's resident memory (interpreter,
    simulator, renderer, one env), never a model; ``env_step_seconds`` one
    ``env.step`` with observations rendered; ``cores_per_env`` how many cores
    one stepping env keeps busy.
    """

    name: str
    env_ram_bytes: int
    env_step_seconds: float
    cores_per_env: float = 1.0


class BackendSpec:
    """One simulator (or robot) backend. Subclass it and override what differs.

    Required: ``name``, :meth:`catalogue`, :meth:`make_env`,
    :meth:`default_adapters`. Optional: :meth:`availability` (default: always
    available), ``env_options`` (name -> default; checked by
    :meth:`check_options`), :meth:`scripted_expert`, ``footprint``.
    ``ript_core.envs.check_backend`` checks a spec against this contract.
    """

    #: lowercase identifier, unique across installed plugins
    name: str = ""
    #: the env options the backend accepts (``env.options`` in a config), name -> default
    env_options: Mapping[str, Any] = {}
    #: the planner's per-env cost; None: the planner assumes a heavy simulator
    footprint: BackendFootprint | None = None
    #: what to run when :meth:`availability` says the backend is missing
    install_hint: str = ""

    def availability(self) -> Availability:
        """Whether this backend can run here; when not, why and the exact fix.

        Must not raise and must not build an env (``ript plugins`` calls it
        for every backend): check for modules with ``importlib.util.find_spec``.
        """
        return Availability.ok()

    def catalogue(self) -> list[TaskInfo]:
        """Every task: name, instruction, registered init states, max steps, ..."""
        raise NotImplementedError(f"backend {self.name!r} defines no catalogue()")

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``env_options`` updated with ``options``; unknown or mistyped ones raise."""
        return check_env_options(self.name, options, self.env_options)

    def make_env(self, task: str, options: dict[str, Any]) -> gym.Env:
        """Build one env for ``task`` (in a worker process; may be slow).

        The env contract: observation dicts with ``"images"`` (camera ->
        ``HxWx3 uint8``), ``"state"`` (1-D float) and ``"instruction"``;
        ``info["success"]`` after every reset and step; ``reset(seed=s,
        options={"init_state": i})`` reproducible whatever the env did before.
        ``options`` has been through :meth:`check_options`.
        """
        raise NotImplementedError(f"backend {self.name!r} defines no make_env()")

    def default_adapters(
        self, task: str, options: dict[str, Any]
    ) -> tuple[ObservationAdapter, ActionAdapter]:
        """``(observation_adapter, action_adapter)`` between this backend's
        envs and a PI0-style policy; ``options`` as :meth:`make_env` got them."""
        raise NotImplementedError(f"backend {self.name!r} defines no default_adapters()")

    def scripted_expert(self, task: str) -> Expert | None:
        """Optional: ``expert(env, rng, noise) -> action`` for BC demos, or None."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
