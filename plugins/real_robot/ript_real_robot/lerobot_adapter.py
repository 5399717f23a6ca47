"""A lerobot ``Robot`` (SO-100/101, Koch, ...) as a :class:`RobotDriver`.

lerobot itself is not a dependency (0.4.x pins ``torch<2.11``); this adapter
uses only its duck-typed surface: ``connect()``, ``get_observation()`` (a flat
dict: ``"<motor>.pos"`` floats and camera name -> HxWx3 uint8 frames),
``send_action(dict)`` (``"<motor>.pos"`` targets; it may return the clipped
action it really sent), ``disconnect()``, and the ``observation_features`` /
``action_features`` dicts that name them (a feature whose value is a tuple is
a camera's shape, a ``float`` one a motor). Joint positions are those
features in ``action_features`` order; the state is those positions; the
action a joint-position target for each, so ``action_kind`` is
``joint_position`` with every motor a joint except a last one named
``gripper``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ript_real_robot.driver import RobotDriver, RobotInfo, RobotReading


class LeRobotDriver(RobotDriver):
    """``robot``: an object with lerobot's ``Robot`` surface (not imported here)."""

    def __init__(self, robot: Any, control_hz: float = 30.0, degrees: bool = True) -> None:
        self.robot = robot
        self.control_hz = control_hz
        # lerobot's SO-100/101 report motor positions in degrees by default
        self.to_rad = np.pi / 180.0 if degrees else 1.0
        self.motors: list[str] = []
        self.cameras: list[str] = []
        self._last_targets: np.ndarray | None = None

    def connect(self) -> RobotInfo:
        if not getattr(self.robot, "is_connected", False):
            self.robot.connect()
        self.motors = [k for k, v in self.robot.action_features.items() if v is float]
        self.cameras = [
            k for k, v in self.robot.observation_features.items() if isinstance(v, tuple)
        ]
        if not self.motors:
            raise ValueError("the lerobot robot's action_features name no float motor targets")
        n_joints = len(self.motors) - (1 if self.motors[-1].startswith("gripper") else 0)
        self.info = RobotInfo(
            name=type(self.robot).__name__,
            cameras=tuple(self.cameras),
            state_dim=len(self.motors),
            action_dim=len(self.motors),
            control_hz=self.control_hz,
            action_kind="joint_position",
            joints=(0, n_joints),
        )
        return self.info

    def read(self) -> RobotReading:
        obs = self.robot.get_observation()
        state = np.array([obs[m] for m in self.motors], dtype=np.float64) * self._scale()
        images = {c: np.asarray(obs[c], dtype=np.uint8) for c in self.cameras}
        return RobotReading(images, state)

    def _scale(self) -> np.ndarray:
        """Radians per motor unit: joints in degrees, the gripper (0..100) as is."""
        scale = np.ones(len(self.motors))
        scale[: self.info.n_joints] = self.to_rad
        return scale

    def send(self, action: np.ndarray) -> None:
        targets = np.asarray(action, dtype=np.float64) / self._scale()
        self.robot.send_action({m: float(v) for m, v in zip(self.motors, targets, strict=True)})
        self._last_targets = targets

    def stop(self) -> None:
        # a position-controlled arm stops where it is when told to go there
        obs = self.robot.get_observation()
        self.robot.send_action({m: float(obs[m]) for m in self.motors})

    def status(self) -> dict[str, Any]:
        return {"driver": "lerobot", "robot": type(self.robot).__name__, "motors": self.motors}

    def close(self) -> None:
        if getattr(self.robot, "is_connected", True):
            self.robot.disconnect()
