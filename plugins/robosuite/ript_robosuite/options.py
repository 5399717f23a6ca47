"""The env options the ``robosuite`` backend takes (``env.options`` in a config),
kept apart from the env so that the spec declares them without importing robosuite."""

from __future__ import annotations

from typing import Any

from ript_core import check_env_options

# Small on CPU: a render costs 60-100 ms at any size there, but the policy's
# image encoder and the demo files grow with it.
DEFAULT_IMAGE_SIZE = 128
IMAGE_SIZE_RANGE = (16, 512)
ENV_OPTIONS = {"image_size": DEFAULT_IMAGE_SIZE, "wrist_camera": True}


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    return check_env_options("robosuite", options, ENV_OPTIONS, image_size_range=IMAGE_SIZE_RANGE)
