"""The env options the ``libero`` backend takes (``env.options`` in a config),
kept apart from the env so that the spec declares them without importing LIBERO."""

from __future__ import annotations

from typing import Any

from ript_core import check_env_options

DEFAULT_IMAGE_SIZE = 256  # what openpi renders (and the pi0 LIBERO data was recorded at)
# How a reset places the scene's fixtures (docs/backends/libero.md, "Reset determinism"):
# "ript": seeded per context, the same scene for a context whatever ran before (training);
# "openpi": openpi's evaluation client's sequence, episode i = the i-th reset after
# seeding np.random once per task with ``openpi_seed``, for episode-by-episode comparison
PROTOCOLS = ("ript", "openpi")
OPENPI_SEED = 7  # examples/libero/main.py's Args.seed
ENV_OPTIONS = {"image_size": DEFAULT_IMAGE_SIZE, "protocol": "ript", "openpi_seed": OPENPI_SEED}


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    checked = check_env_options("libero", options, ENV_OPTIONS)
    if checked["protocol"] not in PROTOCOLS:
        raise ValueError(
            f"libero backend: protocol must be one of {list(PROTOCOLS)}, got "
            f"{checked['protocol']!r} (openpi: openpi's evaluation sequence, for comparing "
            "success rates episode by episode)"
        )
    return checked
