"""The env options the ``libero`` backend takes (``env.options`` in a config),
kept apart from the env so that the spec declares them without importing LIBERO."""

from __future__ import annotations

from typing import Any

from ript_core import check_env_options

DEFAULT_IMAGE_SIZE = 256  # what openpi renders (and the pi0 LIBERO data was recorded at)
ENV_OPTIONS = {"image_size": DEFAULT_IMAGE_SIZE}


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    return check_env_options("libero", options, ENV_OPTIONS)
