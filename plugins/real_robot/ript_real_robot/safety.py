"""The safety layer: composable wrappers around a :class:`RobotDriver`.

Why around the driver and not around the gymnasium env: every path that moves
the arm goes through a driver's ``send`` (the env, ``ript robot check``, a
user's script, the network server), and the limits are per control tick,
which is the driver's unit. A wrapper checks or corrects the action, records
an intervention in the shared :class:`SafetyLog` when it changes anything,
and passes the result on. :func:`safety_stack` builds the default order:

    e-stop guard -> watchdog -> finite check -> per-dim clamp -> step limit
    -> workspace box -> joint limits -> rate limit -> (dry run) -> driver

so a NaN never reaches a clamp (``clip(nan) = nan``), the step limit sees a
clamped action, and the workspace box has the last word on where the
end effector goes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from ript_real_robot.driver import DriverWrapper, RobotDriver, RobotReading
from ript_real_robot.safety_log import SafetyLog


class ActionRejected(RuntimeError):
    """A wrapper refused an action outright (it is not sent)."""


class SafetyWrapper(DriverWrapper):
    """A layer that sees every reading (to know where the arm is) and every action."""

    kind = "safety"

    def __init__(self, inner: RobotDriver, log: SafetyLog) -> None:
        super().__init__(inner)
        self.log = log
        self.last: RobotReading | None = None

    def read(self) -> RobotReading:
        self.last = reading = self.inner.read()
        return reading

    def send(self, action: np.ndarray) -> None:
        action = np.asarray(action, dtype=np.float64)
        checked = self.check(action)
        if checked is not None:
            self.inner.send(checked)

    def check(self, action: np.ndarray) -> np.ndarray | None:
        """The action to pass on (None: send nothing this tick)."""
        return action

    def changed(self, before: np.ndarray, after: np.ndarray, reason: str) -> np.ndarray:
        if not np.array_equal(before, after):
            self.log.record(self.kind, reason, before=before.tolist(), after=after.tolist())
        return after

    def state(self) -> np.ndarray | None:
        return None if self.last is None else np.asarray(self.last.state, dtype=np.float64)


class FiniteCheck(SafetyWrapper):
    """A NaN or infinite action, or one of the wrong width, is not sent: the
    robot holds its last target for that tick."""

    kind = "non_finite"

    def check(self, action):
        width = self.info.action_dim
        if action.shape != (width,):
            self.log.record("bad_shape", f"action of shape {action.shape}, expected ({width},)")
            return None
        if not np.all(np.isfinite(action)):
            self.log.record(self.kind, "non-finite action dropped", action=action.tolist())
            return None
        return action


class ActionClamp(SafetyWrapper):
    """Each action dim clipped to ``[low, high]``."""

    kind = "clamp"

    def __init__(self, inner, log, low: Sequence[float], high: Sequence[float]) -> None:
        super().__init__(inner, log)
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        if self.low.shape != (self.info.action_dim,) or self.high.shape != self.low.shape:
            raise ValueError(
                f"action clamp bounds need {self.info.action_dim} values each, got "
                f"{self.low.shape} and {self.high.shape}"
            )

    def check(self, action):
        return self.changed(action, np.clip(action, self.low, self.high), "action outside bounds")


class StepLimit(SafetyWrapper):
    """At most ``max_ee_step`` metres of end-effector travel per tick
    (``ee_delta`` actions: the translation is scaled down, direction kept),
    at most ``max_joint_step`` radians per joint per tick from the measured
    position (``joint_position`` actions)."""

    kind = "step_limit"

    def __init__(self, inner, log, max_ee_step: float, max_joint_step: float) -> None:
        super().__init__(inner, log)
        self.max_ee_step, self.max_joint_step = max_ee_step, max_joint_step

    def check(self, action):
        info = self.info
        out = action.copy()
        if info.action_kind == "ee_delta":
            travel = float(np.linalg.norm(action[:3])) * info.ee_delta_scale
            if travel > self.max_ee_step:
                out[:3] *= self.max_ee_step / travel
            return self.changed(action, out, f"ee step {travel:.4f} m > {self.max_ee_step} m")
        state = self.state()
        if state is None:
            raise ActionRejected("a joint-position action before any reading of the joints")
        q = state[info.joints[0] : info.joints[1]]
        n = info.n_joints
        out[:n] = np.clip(action[:n], q - self.max_joint_step, q + self.max_joint_step)
        return self.changed(action, out, f"joint step > {self.max_joint_step} rad")


class Workspace(SafetyWrapper):
    """The end effector stays inside the box ``[low, high]`` (metres): an
    ``ee_delta`` action that would leave it is shortened to end on the box."""

    kind = "workspace"

    def __init__(self, inner, log, low: Sequence[float], high: Sequence[float]) -> None:
        super().__init__(inner, log)
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)

    def check(self, action):
        info = self.info
        state = self.state()
        if info.action_kind != "ee_delta" or info.ee is None or state is None:
            return action
        ee = state[info.ee[0] : info.ee[1]]
        target = ee + action[:3] * info.ee_delta_scale
        inside = np.clip(target, self.low, self.high)
        if np.array_equal(inside, target):
            return action
        out = action.copy()
        out[:3] = (inside - ee) / info.ee_delta_scale
        return self.changed(action, out, "end-effector target outside the workspace box")


class JointLimits(SafetyWrapper):
    """Joint-position targets clipped to ``[low, high]``; for ``ee_delta``
    robots (whose joints the driver's IK decides) a measured joint beyond its
    limit is recorded and the robot stopped."""

    kind = "joint_limit"

    def __init__(self, inner, log, low: Sequence[float], high: Sequence[float]) -> None:
        super().__init__(inner, log)
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        if self.low.shape != (self.info.n_joints,):
            raise ValueError(
                f"joint limits need {self.info.n_joints} values each, got {self.low.shape}"
            )

    def check(self, action):
        info = self.info
        if info.action_kind == "joint_position":
            out = action.copy()
            n = info.n_joints
            out[:n] = np.clip(action[:n], self.low, self.high)
            return self.changed(action, out, "joint target outside the joint limits")
        state = self.state()
        if state is not None:
            q = state[info.joints[0] : info.joints[1]]
            if np.any(q < self.low) or np.any(q > self.high):
                self.log.record(self.kind, "measured joint beyond its limit: stopped", q=q.tolist())
                self.inner.stop()
                return None
        return action


class RateLimit(SafetyWrapper):
    """At most ``hz`` actions a second: an action less than one period after
    the previous one waits (a minimum spacing, not a grid: a late tick never
    lets the next one come early)."""

    kind = "rate_limit"

    def __init__(self, inner, log, hz: float, clock: Callable[[], float] = time.monotonic):
        super().__init__(inner, log)
        self.period = 1.0 / hz
        self.clock = clock
        self.next_tick = -np.inf

    def check(self, action):
        now = self.clock()
        while now < self.next_tick:  # never two actions closer than one period
            time.sleep(self.next_tick - now)
            now = self.clock()
        self.next_tick = now + self.period
        return action


class DryRun(SafetyWrapper):
    """Actions are computed, checked and logged, never sent."""

    kind = "dry_run"

    def __init__(self, inner, log) -> None:
        super().__init__(inner, log)
        self.sent: list[np.ndarray] = []

    def send(self, action):
        self.sent.append(np.asarray(action, dtype=np.float64).copy())


class Watchdog(SafetyWrapper):
    """Stops the robot when no action came for ``deadline_s`` while it was
    moving (the policy hung, the link stalled). Armed by each action, disarmed
    by :meth:`stop` (between episodes the robot is expected to stand still)."""

    kind = "watchdog"

    def __init__(self, inner, log, deadline_s: float) -> None:
        super().__init__(inner, log)
        self.deadline_s = deadline_s
        self._last_action: float | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="robot-watchdog")
        self._thread.start()

    def send(self, action):
        with self._lock:
            self._last_action = time.monotonic()
        self.inner.send(action)

    def stop(self):
        with self._lock:
            self._last_action = None
        self.inner.stop()

    def _watch(self) -> None:
        while not self._closed.wait(min(self.deadline_s / 4, 0.05)):
            with self._lock:
                silent = None if self._last_action is None else time.monotonic() - self._last_action
                if silent is not None and silent > self.deadline_s:
                    self._last_action = None
                else:
                    silent = None
            if silent is not None:
                self.log.record(self.kind, f"no action for {silent:.2f} s: robot stopped")
                self.inner.stop()

    def close(self):
        self._closed.set()
        self._thread.join(timeout=1)
        self.inner.close()
