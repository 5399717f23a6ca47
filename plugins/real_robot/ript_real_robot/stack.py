"""A robot's driver built from its config, inside the always-on safety stack."""

from __future__ import annotations

import importlib
from typing import Any

import attrs

from ript_real_robot.config import RobotConfig
from ript_real_robot.driver import RobotDriver
from ript_real_robot.estop import EStop, EStopGuard
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


def load_callable(spec: str) -> Any:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"robot config: {spec!r} must be written as 'package.module:callable'")
    return getattr(importlib.import_module(module), name)


def make_driver(cfg: RobotConfig) -> RobotDriver:
    """The bare driver the config names (not connected yet)."""
    d = cfg.driver
    if d.kind == "twin":
        from ript_real_robot.twin import TwinDriver

        return TwinDriver(d.image_size, d.ee_delta_scale, d.twin_sets_scenes)
    if d.kind == "network":
        from ript_real_robot.network import NetworkDriver

        return NetworkDriver(d.url, d.timeout_s)
    if d.kind == "lerobot":
        from ript_real_robot.lerobot_adapter import LeRobotDriver

        return LeRobotDriver(load_callable(d.factory)(**d.factory_args))
    driver = load_callable(d.factory)(**d.factory_args)
    if not isinstance(driver, RobotDriver):
        raise TypeError(
            f"robot driver.factory {d.factory!r} returned {driver!r}, not a RobotDriver"
        )
    return driver


@attrs.define
class RobotStack:
    """``top`` is what everything talks to; ``raw`` the bare driver."""

    top: RobotDriver
    raw: RobotDriver
    log: SafetyLog
    estop: EStop
    dry_run: DryRun | None

    def close(self) -> None:
        self.estop.uninstall()
        self.top.stop()
        self.top.close()


def safety_stack(
    raw: RobotDriver, cfg: RobotConfig, *, dry_run: bool = False, log: SafetyLog | None = None
) -> RobotStack:
    """``raw`` (connected) wrapped in every configured safety layer, outermost
    first: e-stop guard, watchdog, finite check, clamp, step limit, workspace,
    joint limits, rate limit, then the dry-run layer that never sends."""
    s = cfg.safety
    log = log or SafetyLog()
    info = raw.info
    d: RobotDriver = raw
    dry = None
    if dry_run:
        d = dry = DryRun(d, log)
    if s.rate_limit:
        d = RateLimit(d, log, info.control_hz)
    if s.joint_low is not None and s.joint_high is not None:
        d = JointLimits(d, log, s.joint_low, s.joint_high)
    if s.workspace_low is not None and s.workspace_high is not None:
        d = Workspace(d, log, s.workspace_low, s.workspace_high)
    d = StepLimit(d, log, s.max_ee_step_m, s.max_joint_step_rad)
    if s.action_low is None or s.action_high is None:
        raise ValueError(
            "the robot config sets no safety.action_low / action_high: per-dimension action "
            f"clamps are required ({info.action_dim} values each)"
        )
    d = ActionClamp(d, log, s.action_low, s.action_high)
    d = FiniteCheck(d, log)
    d = Watchdog(d, log, s.watchdog_s)
    estop = EStop(log)
    d = EStopGuard(d, log, estop)
    return RobotStack(d, raw, log, estop, dry)


def build_stack(cfg: RobotConfig, *, dry_run: bool = False) -> RobotStack:
    raw = make_driver(cfg)
    raw.connect()
    return safety_stack(raw, cfg, dry_run=dry_run)
