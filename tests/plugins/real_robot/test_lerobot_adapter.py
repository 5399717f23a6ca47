"""The lerobot-surface adapter with a stand-in object that has exactly
lerobot's duck-typed ``Robot`` surface (lerobot itself is not installed)."""

from __future__ import annotations

import numpy as np
import pytest
from ript_real_robot.config import RobotConfig, SafetySection
from ript_real_robot.lerobot_adapter import LeRobotDriver
from ript_real_robot.stack import safety_stack

MOTORS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


class StandInSO101:
    """lerobot's SO-101 follower surface: motor positions in degrees (gripper 0-100)."""

    def __init__(self) -> None:
        self.is_connected = False
        self.pos = {m: 0.0 for m in MOTORS}
        self.sent: list[dict[str, float]] = []

    @property
    def observation_features(self):
        return {**{f"{m}.pos": float for m in MOTORS}, "front": (48, 64, 3), "wrist": (48, 64, 3)}

    @property
    def action_features(self):
        return {f"{m}.pos": float for m in MOTORS}

    def connect(self, calibrate: bool = True) -> None:
        self.is_connected = True

    def get_observation(self):
        obs = {f"{m}.pos": v for m, v in self.pos.items()}
        return {
            **obs,
            "front": np.zeros((48, 64, 3), np.uint8),
            "wrist": np.ones((48, 64, 3), np.uint8),
        }

    def send_action(self, action):
        self.sent.append(dict(action))
        self.pos.update({k.removesuffix(".pos"): v for k, v in action.items()})
        return action

    def disconnect(self) -> None:
        self.is_connected = False


def test_the_adapter_maps_lerobot_features_to_the_driver_interface():
    robot = StandInSO101()
    d = LeRobotDriver(robot, control_hz=30)
    info = d.connect()
    assert robot.is_connected
    assert (info.cameras, info.state_dim, info.action_dim, info.joints) == (
        ("front", "wrist"), 6, 6, (0, 5))  # fmt: skip
    assert info.action_kind == "joint_position"
    robot.pos["elbow_flex"] = 90.0
    robot.pos["gripper"] = 40.0
    r = d.read()
    np.testing.assert_allclose(r.state, [0, 0, np.pi / 2, 0, 0, 40.0])  # radians, gripper as is
    assert r.images["wrist"].shape == (48, 64, 3)
    d.send(np.array([0.1, 0, 0, 0, 0, 50.0]))
    assert robot.sent[-1]["shoulder_pan.pos"] == pytest.approx(np.degrees(0.1))
    assert robot.sent[-1]["gripper.pos"] == 50.0
    d.stop()  # holds where it is: the target is the measured position
    assert robot.sent[-1] == {f"{m}.pos": robot.pos[m] for m in MOTORS}
    d.close()
    assert not robot.is_connected


def test_joint_safety_limits_apply_to_a_lerobot_arm():
    robot = StandInSO101()
    d = LeRobotDriver(robot)
    d.connect()
    safety = SafetySection(action_low=[-3] * 5 + [0], action_high=[3] * 5 + [100],
                           max_joint_step_rad=0.05, joint_low=[-1] * 5, joint_high=[1] * 5,
                           rate_limit=False)  # fmt: skip
    stack = safety_stack(d, RobotConfig(safety=safety))
    try:
        stack.top.read()
        stack.top.send(np.array([0.5, -0.02, 0, 0, 0, 30.0]))
        sent = {k: v for k, v in robot.sent[-1].items()}
        assert sent["shoulder_pan.pos"] == pytest.approx(np.degrees(0.05))  # one 0.05 rad step
        assert sent["shoulder_lift.pos"] == pytest.approx(np.degrees(-0.02))
        assert stack.log.counts == {"step_limit": 1}
    finally:
        stack.close()
