"""The env options the ``maniskill`` backend takes (``env.options`` in a config),
kept apart from the env so that the spec declares them without importing ManiSkill."""

from __future__ import annotations

from typing import Any

from ript_core import check_env_options

DEFAULT_IMAGE_SIZE = 128
MAX_IMAGE_SIZE = 128  # CPU rendering costs the same per frame at any size up to this
IMAGE_SIZE_RANGE = (16, MAX_IMAGE_SIZE)
ENV_OPTIONS = {"image_size": DEFAULT_IMAGE_SIZE, "hand_camera": True}


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    return check_env_options("maniskill", options, ENV_OPTIONS, image_size_range=IMAGE_SIZE_RANGE)
