"""A served observation dict -> the :class:`PolicyInput` the rollout runner
would hand the policy, or an :class:`ObservationError` naming the key at fault.

Two input formats (what a client sends):

- ``libero``: openpi's LIBERO client (``LiberoInputs``): ``observation/image``
  (the first camera slot), ``observation/wrist_image`` (the second),
  ``observation/state``, ``prompt``;
- ``ript``: the policy input as it is: ``images`` (a map from the checkpoint's
  camera input keys to images), ``state``, ``prompt``.

Either may add ``noise_seed``: the seed of the chunk's noise, as the rollout
runner gives the policy one per decision (``ript_core.rollout.runner.decision_seed``);
the same seed and observation give the chunk ``ript eval`` computes.

Images are HxWx3 uint8; like openpi's ``_parse_image``, 3xHxW and float
images in [0, 1] are accepted and converted. The state dtype follows the env
side's rule (``ComposedObservationAdapter``): float64 stays float64 (openpi's
LIBERO client sends it so), anything else becomes float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from ript_core.envs.interfaces import ComposedObservationAdapter
from ript_core.policy_input import PolicyInput

INPUT_FORMATS = ("libero", "ript")
SEED_KEY = "noise_seed"
_LIBERO_IMAGES = ("observation/image", "observation/wrist_image")


class ObservationError(ValueError):
    """An observation the policy cannot take; the message names the key."""


@attrs.frozen
class InputSpec:
    """What a served checkpoint reads from an observation dict.

    ``camera_keys``: the :class:`PolicyInput` image key of each camera slot, in
    the model's order; ``required``: those a sample must provide (slots whose
    pipeline says ``if_missing="error"``; every ``libero`` image, as openpi's
    ``LiberoInputs``); ``state_dim``: the checkpoint's state dims.
    """

    format: str
    camera_keys: tuple[str, ...]
    required: frozenset[str]
    state_dim: int

    def __attrs_post_init__(self) -> None:
        if self.format not in INPUT_FORMATS:
            raise ValueError(f"input format must be one of {INPUT_FORMATS}, got {self.format!r}")
        if self.format == "libero" and len(self.camera_keys) < 2:
            raise ValueError(
                "the libero input format feeds two camera slots (image, wrist image); this "
                f"checkpoint has {len(self.camera_keys)}: use the ript input format"
            )

    @property
    def image_keys(self) -> dict[str, str]:
        """wire key -> PolicyInput image key."""
        if self.format == "libero":
            return dict(zip(_LIBERO_IMAGES, self.camera_keys, strict=False))
        return {f"images/{k}": k for k in self.camera_keys}

    @property
    def keys(self) -> list[str]:
        """The keys a client sends (``noise_seed`` is optional)."""
        state = "observation/state" if self.format == "libero" else "state"
        return [*self.image_keys, state, "prompt"]

    def policy_input(self, obs: Any) -> tuple[PolicyInput, int | None]:
        """``obs`` as the policy's input, and its ``noise_seed`` (``None``: not sent)."""
        if not isinstance(obs, Mapping):
            raise ObservationError(
                f"the observation must be a map of {self.keys}, got a {type(obs).__name__}"
            )
        adapter = ComposedObservationAdapter([self._fields])
        return adapter(obs), _seed(obs)

    def _fields(self, obs: dict[str, Any]) -> dict[str, Any]:
        if self.format == "libero":
            given = {k: obs[k] for k in _LIBERO_IMAGES if k in obs}
            state_key = "observation/state"
        else:
            given = _image_map(obs, set(self.camera_keys))
            state_key = "state"
        images = {}
        for wire_key, key in self.image_keys.items():
            if wire_key in given:
                images[key] = _image(wire_key, given[wire_key])
            elif key in self.required:
                raise ObservationError(_missing(wire_key, self.keys))
        missing = [k for k in (state_key, "prompt") if k not in obs]
        if missing:
            raise ObservationError(_missing(missing[0], self.keys))
        if not isinstance(obs["prompt"], str):
            raise ObservationError(
                f"observation key 'prompt' must be a string, got {type(obs['prompt']).__name__}"
            )
        return {
            "images": images,
            "state": _state(state_key, obs[state_key], self.state_dim),
            "prompt": obs["prompt"],
        }


def input_spec(
    format: str, camera_keys: Sequence[str], required: Sequence[str], state_dim: int
) -> InputSpec:
    required_keys = frozenset(camera_keys if format == "libero" else required)
    return InputSpec(format, tuple(camera_keys), required_keys, state_dim)


def _missing(key: str, keys: list[str]) -> str:
    return f"observation key {key!r} is missing; this policy reads {keys} (+ optional {SEED_KEY!r})"


def _image_map(obs: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    images = obs.get("images", {})
    if not isinstance(images, Mapping):
        raise ObservationError(
            f"observation key 'images' must be a map of camera key -> image, got "
            f"{type(images).__name__}"
        )
    unknown = sorted(str(k) for k in images if k not in known)
    if unknown:
        raise ObservationError(
            f"observation key 'images/{unknown[0]}' is not a camera of this policy; "
            f"its cameras read {sorted(known)}"
        )
    return {f"images/{k}": v for k, v in images.items()}


def _image(key: str, value: Any) -> np.ndarray:
    img = np.asarray(value) if isinstance(value, np.ndarray | list) else None
    if img is not None and img.ndim == 3 and img.shape[-1] != 3 and img.shape[0] == 3:
        img = img.transpose(1, 2, 0)  # CHW -> HWC, as openpi's _parse_image
    if img is not None and np.issubdtype(img.dtype, np.floating):
        img = (255 * img).astype(np.uint8)  # openpi's float images are in [0, 1]
    if img is None or img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
        got = (
            f"an array of shape {img.shape} and dtype {img.dtype}"
            if img is not None
            else f"a {type(value).__name__}"
        )
        raise ObservationError(
            f"observation key {key!r} must be an HxWx3 uint8 image (3xHxW and float in "
            f"[0, 1] are converted), got {got}"
        )
    return np.ascontiguousarray(img)


def _state(key: str, value: Any, dim: int) -> np.ndarray:
    state = np.asarray(value) if isinstance(value, np.ndarray | list | tuple) else None
    if state is None or state.dtype.kind not in "iuf" or state.shape != (dim,):
        got = (
            f"an array of shape {state.shape} and dtype {state.dtype}"
            if state is not None
            else f"a {type(value).__name__}"
        )
        raise ObservationError(
            f"observation key {key!r} must be {dim} numbers (this policy's state dims), got {got}"
        )
    return state


def _seed(obs: Mapping[str, Any]) -> int | None:
    seed = obs.get(SEED_KEY)
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise ObservationError(
            f"observation key {SEED_KEY!r} must be an integer in [0, 2**63), got {seed!r}"
        )
    return int(seed)
