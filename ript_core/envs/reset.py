"""Reading ``reset(options={"init_state": i})`` the same way in every backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def requested_init_state(
    options: Mapping[str, Any] | None,
    n_init_states: int,
    rng: np.random.Generator,
    *,
    backend: str,
    task: str,
) -> int:
    """The registered init state a reset asks for: ``options["init_state"]``,
    or one drawn from ``rng`` (the env's ``np_random``) when it is absent.

    Any other reset option, and an init state outside ``[0, n_init_states)``,
    raise ``ValueError`` naming the backend or the task.
    """
    options = dict(options or {})
    index = options.pop("init_state", None)
    if options:
        raise ValueError(f"unknown reset options {sorted(options)}; {backend} knows 'init_state'")
    if index is None:
        index = int(rng.integers(n_init_states))
    index = int(index)
    if not 0 <= index < n_init_states:
        raise ValueError(f"{task}: init_state {index} out of range [0, {n_init_states})")
    return index
