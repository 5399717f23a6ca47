"""The robot set-up: which driver, the safety limits, the tasks and their
operator-recorded scenes. A YAML file named by ``$RIPT_ROBOT_CONFIG``; without
it, the SO-101 digital twin (:data:`TWIN_DEFAULT`).

Why an environment variable and not an env option: the catalogue (tasks and
scenes) is read before any option reaches the backend (``ript tasks``, the
context sampler), and both must come from the same file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import attrs

from ript_core import load_config, structure

CONFIG_ENV = "RIPT_ROBOT_CONFIG"
DRIVERS = ("twin", "network", "lerobot", "python")
SUCCESS_SOURCES = ("operator", "detector")


@attrs.define
class DriverSection:
    #: twin | network | lerobot | python (see docs/backends/real_robot.md)
    kind: str = "twin"
    #: network: the robot server's address
    url: str = "ws://127.0.0.1:8765"
    #: network: seconds to wait for any answer before the link counts as lost
    timeout_s: float = 2.0
    #: lerobot / python: "module:callable" returning the lerobot Robot or RobotDriver
    factory: str = ""
    #: lerobot: keyword arguments for the factory
    factory_args: dict[str, Any] = attrs.Factory(dict)
    #: twin: camera size (pixels per side) and metres per unit of ee-delta action
    image_size: int = 64
    ee_delta_scale: float = 0.025
    #: twin: False makes the operator confirm each scene as on a real arm
    #: (the twin still resets its simulator to the scene)
    twin_sets_scenes: bool = True


@attrs.define
class SafetySection:
    """Every limit; None leaves a limit out (``ript robot check`` lists them)."""

    action_low: list[float] | None = None
    action_high: list[float] | None = None
    max_ee_step_m: float = 0.02
    max_joint_step_rad: float = 0.1
    workspace_low: list[float] | None = None
    workspace_high: list[float] | None = None
    joint_low: list[float] | None = None
    joint_high: list[float] | None = None
    watchdog_s: float = 1.0
    #: wait for each control tick (off only for a simulated twin stepped as fast as it goes)
    rate_limit: bool = True


@attrs.define
class TaskSection:
    name: str
    instruction: str
    max_steps: int
    #: the operator-recorded scene set-ups; init state i is scenes[i]
    scenes: list[str]
    #: what the operator reads when asked to set a scene up, by scene name
    scene_notes: dict[str, str] = attrs.Factory(dict)


@attrs.define
class RobotConfig:
    driver: DriverSection = attrs.Factory(DriverSection)
    safety: SafetySection = attrs.Factory(SafetySection)
    tasks: list[TaskSection] = attrs.Factory(list)
    #: who says whether an episode succeeded: the operator, or a detector
    success: str = "operator"
    #: with success: detector, "module:callable" taking a RobotReading and
    #: returning True once the task is done; empty: the driver's own
    #: ``RobotReading.success`` (the twin's simulator)
    success_detector: str = ""

    def check(self) -> RobotConfig:
        if self.driver.kind not in DRIVERS:
            raise ValueError(f"robot driver.kind {self.driver.kind!r}: one of {DRIVERS}")
        if self.success not in SUCCESS_SOURCES:
            raise ValueError(f"robot success {self.success!r}: one of {SUCCESS_SOURCES}")
        if not self.tasks:
            raise ValueError("the robot config lists no tasks")
        for t in self.tasks:
            if not t.scenes:
                raise ValueError(f"robot task {t.name!r} lists no scenes")
        return self

    def task(self, name: str) -> TaskSection:
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(f"real_robot has no task {name!r}; known: {[t.name for t in self.tasks]}")

    @property
    def exact_reset(self) -> bool:
        """Only a simulated twin can put a scene back bit for bit."""
        return self.driver.kind == "twin"


TWIN_DEFAULT: dict[str, Any] = {
    "driver": {"kind": "twin"},
    "safety": {
        # the twin's action space, its Cartesian bounds, its joints' ranges
        "action_low": [-1.0, -1.0, -1.0, 0.0],
        "action_high": [1.0, 1.0, 1.0, 1.0],
        "workspace_low": [0.1, -0.3, 0.0],
        "workspace_high": [0.5, 0.3, 0.4],
        "joint_low": [-1.92, -1.75, -1.69, -1.66, -2.74],
        "joint_high": [1.92, 1.75, 1.69, 1.66, 2.84],
        "rate_limit": False,
    },
    "tasks": [
        {
            "name": "pick_cube",
            "instruction": "pick up the cube",
            "max_steps": 60,
            "scenes": [f"cube_{i:02d}" for i in range(20)],
        }
    ],
    "success": "operator",
}


def load_robot_config(path: str | Path | None = None) -> RobotConfig:
    """``path``, else ``$RIPT_ROBOT_CONFIG``, else the twin's default set-up."""
    path = path or os.environ.get(CONFIG_ENV)
    if path:
        return load_config(RobotConfig, path).check()
    return structure(RobotConfig, TWIN_DEFAULT, source="the twin's default robot config").check()
