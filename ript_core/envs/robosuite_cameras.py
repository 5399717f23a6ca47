"""Skipping the camera renders of robosuite-based backends (LIBERO, robosuite).

A public helper module (``from ript_core import robosuite_cameras``). A
robosuite env renders its cameras inside ``step()``, from "observables" whose
sensors it samples on its own clock. For a step whose observation nobody reads
(``ript_core.envs.unread``), :func:`frozen` swaps each camera sensor for one
that returns its last image: the render is skipped and robosuite's sampling
clock runs as before, so every step that does render returns the same frame
it would have without skipping. robosuite 1.4 and 1.5 keep observables the
same way (``env._observables[name]._sensor``, a private attribute).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


@contextlib.contextmanager
def frozen(robosuite_env: Any, observables: Sequence[str]) -> Iterator[None]:
    """Within: the camera ``observables`` of ``robosuite_env`` (names such as
    ``"agentview_image"``) return their last image instead of rendering."""
    cameras = [robosuite_env._observables[name] for name in observables]
    sensors = [camera._sensor for camera in cameras]
    try:
        for camera, sensor in zip(cameras, sensors, strict=True):
            last = np.array(camera.obs)

            def last_image(obs_cache: dict, last: np.ndarray = last) -> np.ndarray:
                return last

            last_image.__modality__ = sensor.__modality__  # robosuite reads it
            camera._sensor = last_image
        yield
    finally:
        for camera, sensor in zip(cameras, sensors, strict=True):
            camera._sensor = sensor
