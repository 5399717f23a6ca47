"""Each safety wrapper on crafted actions, against a stand-in arm that moves
exactly as commanded: what reaches the arm, and what is logged."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ript_real_robot.config import RobotConfig, SafetySection
from ript_real_robot.estop import EmergencyStopped, EStop, EStopGuard
from ript_real_robot.safety import (
    ActionClamp,
    DryRun,
    FiniteCheck,
    JointLimits,
    RateLimit,
    StepLimit,
    Watchdog,
    Workspace,
)
from ript_real_robot.safety_log import SafetyLog
from ript_real_robot.stack import safety_stack

from tests.plugins.real_robot.conftest import FakeArm


def test_non_finite_and_wrong_width_actions_never_reach_the_arm(arm):
    log = SafetyLog()
    d = FiniteCheck(arm, log)
    for bad in ([np.nan, 0, 0, 1], [0, np.inf, 0, 1], [0, 0, 1]):
        d.send(np.array(bad))
    d.send(np.array([0.1, 0, 0, 1]))
    assert len(arm.received) == 1 and np.array_equal(arm.received[0], [0.1, 0, 0, 1])
    assert log.counts == {"non_finite": 2, "bad_shape": 1}


def test_clamp_clips_each_dimension_and_logs_only_changes(arm):
    log = SafetyLog()
    d = ActionClamp(arm, log, [-1, -1, -1, 0], [1, 1, 1, 1])
    d.send(np.array([2.0, -3.0, 0.5, 1.5]))
    d.send(np.array([0.2, 0.2, 0.2, 0.5]))
    np.testing.assert_array_equal(arm.received[0], [1.0, -1.0, 0.5, 1.0])
    np.testing.assert_array_equal(arm.received[1], [0.2, 0.2, 0.2, 0.5])
    assert log.counts["clamp"] == 1 and log.events[0].detail["before"] == [2.0, -3.0, 0.5, 1.5]
    with pytest.raises(ValueError, match="4 values each"):
        ActionClamp(arm, log, [-1, -1], [1, 1])


def test_ee_step_limit_shortens_the_translation_keeping_its_direction(arm):
    log = SafetyLog()
    d = StepLimit(arm, log, max_ee_step=0.02, max_joint_step=0.1)
    d.send(np.array([0.3, 0.4, 0.0, 1.0]))  # 0.5 units * 0.1 m = 5 cm > 2 cm
    sent = arm.received[0]
    assert np.linalg.norm(sent[:3]) * arm.scale == pytest.approx(0.02)
    np.testing.assert_allclose(sent[:3] / np.linalg.norm(sent[:3]), [0.6, 0.8, 0.0])
    assert sent[3] == 1.0  # the gripper is not a step
    d.send(np.array([0.1, 0.0, 0.0, 0.0]))  # 1 cm: untouched
    np.testing.assert_array_equal(arm.received[1], [0.1, 0, 0, 0])
    assert log.counts == {"step_limit": 1}


def test_joint_step_limit_and_joint_limits_on_joint_targets():
    arm = FakeArm(kind="joint_position")
    arm.connect()
    log = SafetyLog()
    d = StepLimit(JointLimits(arm, log, [-1, -1, -1], [1, 1, 0.05]), log, 0.02, 0.1)
    d.read()
    d.send(np.array([0.5, -0.05, 0.08, 0.0]))  # from q = 0
    np.testing.assert_allclose(arm.received[0], [0.1, -0.05, 0.05, 0.0])  # step, then limit
    assert log.counts == {"step_limit": 1, "joint_limit": 1}
    with pytest.raises(ValueError, match="3 values each"):
        JointLimits(arm, log, [-1], [1])


def test_workspace_box_stops_the_end_effector_on_its_wall(arm):
    log = SafetyLog()
    d = Workspace(arm, log, [0.1, -0.3, 0.15], [0.5, 0.3, 0.4])
    d.read()  # ee at (0.3, 0, 0.2)
    d.send(np.array([0.0, 0.0, -1.0, 1.0]))  # would go to z = 0.1
    np.testing.assert_allclose(arm.ee, [0.3, 0.0, 0.15])
    d.read()
    d.send(np.array([1.0, 0.0, 0.0, 1.0]))  # x 0.3 -> 0.4: inside
    np.testing.assert_allclose(arm.ee, [0.4, 0.0, 0.15])
    assert log.counts == {"workspace": 1}


def test_measured_joint_beyond_its_limit_stops_an_ee_robot(arm):
    log = SafetyLog()
    d = JointLimits(arm, log, [-1, -1, -1], [1, 1, 1])
    arm.q = np.array([0.0, 1.2, 0.0])
    d.read()
    d.send(np.array([0.1, 0, 0, 1]))
    assert arm.received == [] and arm.stops == 1 and log.counts == {"joint_limit": 1}


def test_rate_limit_spaces_actions_at_the_control_period(arm):
    d = RateLimit(arm, SafetyLog(), hz=50.0)
    stamps = []
    for _ in range(6):
        d.send(np.zeros(4))
        stamps.append(time.monotonic())
    gaps = np.diff(stamps)
    assert gaps.min() >= 0.02 - 1e-3  # stamps are taken just after each send returns
    assert len(arm.received) == 6


def test_watchdog_stops_a_silent_moving_robot_and_not_a_resting_one(arm):
    log = SafetyLog()
    d = Watchdog(arm, log, deadline_s=0.1)
    try:
        time.sleep(0.25)
        assert arm.stops == 0  # never moved: nothing to stop
        d.send(np.zeros(4))
        time.sleep(0.3)
        assert arm.stops == 1 and log.counts == {"watchdog": 1}  # once, then disarmed
        for _ in range(5):  # actions within the deadline keep it quiet
            d.send(np.zeros(4))
            time.sleep(0.03)
        d.stop()  # the episode's end disarms it
        time.sleep(0.25)
        assert arm.stops == 2 and log.counts == {"watchdog": 1}
    finally:
        d.close()


def test_estop_stops_at_once_and_refuses_every_later_action(arm):
    log = SafetyLog()
    estop = EStop(log)
    d = EStopGuard(arm, log, estop)
    d.send(np.zeros(4))
    estop.trigger("test button")
    assert arm.stops == 1
    with pytest.raises(EmergencyStopped):
        d.send(np.zeros(4))
    assert len(arm.received) == 1 and log.counts == {"estop": 1}


def test_sigterm_triggers_the_estop(arm):
    import os
    import signal

    estop = EStop(SafetyLog())
    estop.attach(arm)
    assert estop.install()
    try:
        with pytest.raises(EmergencyStopped, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode
        assert arm.stops == 1 and estop.engaged.is_set()
    finally:
        estop.uninstall()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    result = []
    t = threading.Thread(target=lambda: result.append(EStop(SafetyLog()).install()))
    t.start()
    t.join()
    assert result == [False]  # signal handlers belong to the main thread


def test_full_stack_nan_and_dry_run(arm):
    safety = SafetySection(action_low=[-1, -1, -1, 0], action_high=[1, 1, 1, 1],
                           workspace_low=[0, -1, 0], workspace_high=[1, 1, 1], rate_limit=False)  # fmt: skip
    cfg = RobotConfig(safety=safety)
    stack = safety_stack(arm, cfg, dry_run=True)
    try:
        stack.top.read()
        stack.top.send(np.array([np.nan, 5.0, 0.0, 2.0]))
        stack.top.send(np.array([5.0, 0.0, 0.0, 2.0]))
        assert arm.received == []  # dry run: nothing reaches the arm
        assert isinstance(stack.dry_run, DryRun) and len(stack.dry_run.sent) == 1
        # clamp to 1, then the 2 cm step limit: 0.2 units at 0.1 m/unit
        np.testing.assert_allclose(stack.dry_run.sent[0], [0.2, 0.0, 0.0, 1.0])
        assert stack.log.counts == {"non_finite": 1, "clamp": 1, "step_limit": 1}
    finally:
        stack.close()
