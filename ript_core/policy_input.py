"""The one type both sides of the policy boundary share: an env observation
translated for the policy. It lives beside neither ``envs`` nor ``policy`` so
that the policy never imports the env side (and vice versa)."""

from __future__ import annotations

from collections.abc import Mapping

import attrs
import numpy as np


@attrs.frozen
class PolicyInput:
    """One env observation translated for the policy.

    ``images`` maps a policy camera slot (e.g. ``"base_0_rgb"``) to an
    ``HxWx3 uint8`` image already in the orientation the policy was trained
    on; any size (the policy resizes with padding). ``state`` is the raw,
    un-normalised proprio vector (float32, or float64 when the env composes
    it in float64: normalising from float64 reproduces openpi's model input
    bit for bit). ``prompt`` is the task instruction.
    """

    images: Mapping[str, np.ndarray]
    state: np.ndarray
    prompt: str


__all__ = ["PolicyInput"]
