"""What a backend tells the core about its tasks, before any env is built."""

from __future__ import annotations

import attrs
import numpy as np


@attrs.frozen
class TaskInfo:
    """One task of a backend's catalogue.

    ``name`` is unique within the backend; the global id is ``"<backend>/<name>"``.
    ``n_init_states`` registered initial states are addressable as
    ``env.reset(options={"init_state": i})`` for ``0 <= i < n_init_states``.
    ``settle_steps`` no-op actions (``noop_action``) are sent after every reset
    before the policy acts (LIBERO lets objects fall into place this way).
    ``exact_reset`` False: init state ``i`` names a scene that cannot be put
    back bit for bit (an operator's set-up on a real robot); the conformance
    check then does not compare repeated resets, and a group's K rollouts are
    K attempts at "the same" scene, not K copies of one state.
    """

    name: str
    instruction: str
    n_init_states: int
    max_steps: int
    suite: str = "default"
    settle_steps: int = 0
    noop_action: tuple[float, ...] | None = None
    exact_reset: bool = True

    def __attrs_post_init__(self) -> None:
        if self.n_init_states < 1:
            raise ValueError(f"task {self.name!r}: n_init_states must be >= 1")
        if self.max_steps < 1:
            raise ValueError(f"task {self.name!r}: max_steps must be >= 1")
        if self.settle_steps and self.noop_action is None:
            raise ValueError(f"task {self.name!r}: settle_steps > 0 needs a noop_action")

    def noop(self) -> np.ndarray:
        if self.noop_action is None:
            raise ValueError(f"task {self.name!r} declares no noop_action")
        return np.asarray(self.noop_action, dtype=np.float32)


@attrs.frozen
class Availability:
    """Whether a backend can run here; when not, why and the exact fix."""

    available: bool
    reason: str = ""
    install: str = ""

    @classmethod
    def ok(cls) -> Availability:
        return cls(True)

    @classmethod
    def missing(cls, reason: str, install: str) -> Availability:
        return cls(False, reason, install)
