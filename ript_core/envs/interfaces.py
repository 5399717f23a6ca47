"""The translators between an environment and the policy.

Data flow (one direction only)::

    env obs dict --ObservationAdapter--> PolicyInput --policy--> action chunk
    action chunk (un-normalised, policy units) --ActionAdapter--> env actions

Adapters belong to the plugin that knows its environment: which cameras feed
which policy slot, image flips, how the proprio state is composed, how many
action dims the env takes, the gripper convention and clipping. What belongs
to a *checkpoint* (resize to the model's size, [-1, 1] scaling, normalisation
statistics, padding to the model's dims) is the policy's preprocessing, not
an adapter's job: the same env can then serve checkpoints trained elsewhere.

Adapters are small callables composed in a list (openpi-style transforms), so
every step is testable alone.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ript_core.policy_input import PolicyInput

Obs = Mapping[str, Any]
ObsTransform = Callable[[dict[str, Any]], dict[str, Any]]
ActionTransform = Callable[[np.ndarray], np.ndarray]


class ObservationAdapter(abc.ABC):
    """Raw env observation -> :class:`PolicyInput`."""

    @abc.abstractmethod
    def __call__(self, obs: Obs) -> PolicyInput: ...


class ActionAdapter(abc.ABC):
    """Policy action chunk ``[T, D_policy]`` (policy units, un-normalised) ->
    env actions ``[T, D_env]`` that ``env.step`` accepts row by row."""

    @abc.abstractmethod
    def __call__(self, actions: np.ndarray) -> np.ndarray: ...


class ComposedObservationAdapter(ObservationAdapter):
    """Apply dict->dict ``transforms`` in order, then read the final dict's
    ``images`` / ``state`` / ``prompt`` keys."""

    def __init__(self, transforms: Sequence[ObsTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, obs: Obs) -> PolicyInput:
        data: dict[str, Any] = dict(obs)
        for transform in self.transforms:
            data = transform(data)
        missing = {"images", "state", "prompt"} - data.keys()
        if missing:
            raise KeyError(
                f"observation adapter produced no {sorted(missing)}; its last transform "
                "must output the keys 'images', 'state' and 'prompt'"
            )
        state = np.asarray(data["state"])
        return PolicyInput(
            images=dict(data["images"]),
            # float64 stays float64 (see PolicyInput); anything else becomes float32
            state=state if state.dtype == np.float64 else state.astype(np.float32),
            prompt=str(data["prompt"]),
        )


class ComposedActionAdapter(ActionAdapter):
    """Apply array->array ``transforms`` in order."""

    def __init__(self, transforms: Sequence[ActionTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, actions: np.ndarray) -> np.ndarray:
        out = np.asarray(actions)
        for transform in self.transforms:
            out = transform(out)
        return out


# ---- small reusable transforms -------------------------------------------------


def slice_action_dims(n: int) -> ActionTransform:
    """Keep the first ``n`` action dims (the policy pads to its own width)."""

    def transform(actions: np.ndarray) -> np.ndarray:
        if actions.shape[-1] < n:
            raise ValueError(f"policy gave {actions.shape[-1]} action dims, the env needs {n}")
        return actions[..., :n]

    return transform


def clip_actions(low: np.ndarray, high: np.ndarray) -> ActionTransform:
    """Clip to the env's action space bounds."""
    low = np.asarray(low, dtype=np.float32)
    high = np.asarray(high, dtype=np.float32)

    def transform(actions: np.ndarray) -> np.ndarray:
        return np.clip(actions, low, high).astype(np.float32)

    return transform
