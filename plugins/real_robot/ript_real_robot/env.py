"""One robot task as a ``gymnasium.Env`` with ript-core's env contract, run
by the episode protocol of RL on hardware.

- ``reset(seed, options={"init_state": i})``: stop the arm; scene ``i`` of
  the task is set up (by the robot itself when it can, a digital twin; else
  the operator is asked and confirms with Enter); the first reading.
- ``step(action)``: one control tick through the safety stack, then a
  reading. The episode ends at the task's ``max_steps`` (or when the robot's
  success detector fires, with ``success: detector``); the arm is stopped and
  the operator labels it (success / failure / took over).
- Every ended episode is written to ``episodes_dir`` before ``step``
  returns. A link lost mid-episode, an operator who took over, or an
  emergency stop void the episode: it is written as discarded with its reason
  and :class:`ript_core.EpisodeDiscarded` (or the e-stop's
  ``KeyboardInterrupt``) tells the rollout runner, which runs it again.

Observations: ``images`` (the robot's cameras), ``state`` (its state
vector, float64), ``instruction``. ``info``: ``success`` and ``metrics``
(this episode's safety interventions so far, ``safety/<kind>``, which the
trainer sums into its ``env/safety/<kind>`` metrics).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from ript_core import EpisodeDiscarded, requested_init_state
from ript_real_robot.config import RobotConfig, TaskSection
from ript_real_robot.driver import RobotLinkError, RobotReading
from ript_real_robot.estop import EmergencyStopped
from ript_real_robot.operator import SUCCESS, TOOK_OVER, Operator
from ript_real_robot.recorder import EpisodeBuffer, EpisodeRecorder
from ript_real_robot.stack import RobotStack, build_stack, load_callable

log = logging.getLogger(__name__)
_CHARSET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,'-_"


class RealRobotEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        cfg: RobotConfig,
        task: str,
        *,
        episodes_dir: str | Path,
        dry_run: bool = False,
        success: str = "",
        operator: Operator | None = None,
        stack: RobotStack | None = None,
    ) -> None:
        self.cfg = cfg
        self.task: TaskSection = cfg.task(task)
        self.success_source = success or cfg.success
        # a pluggable detector (a vision model, a scale, a switch), or the driver's own verdict
        self.detector = (
            load_callable(cfg.success_detector)
            if cfg.success_detector
            else (lambda reading: bool(reading.success))
        )
        self.stack = stack or build_stack(cfg, dry_run=dry_run)
        self.robot = self.stack.top
        self.operator = operator or Operator()
        self.recorder = EpisodeRecorder(episodes_dir)
        info = self.robot.info
        first = self.robot.read()
        self.observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict(
                    {
                        c: gym.spaces.Box(0, 255, first.images[c].shape, np.uint8)
                        for c in info.cameras
                    }
                ),
                "state": gym.spaces.Box(-np.inf, np.inf, (info.state_dim,), np.float64),
                "instruction": gym.spaces.Text(max_length=256, charset=_CHARSET),
            }
        )
        s = cfg.safety
        self.action_space = gym.spaces.Box(
            np.asarray(s.action_low, np.float32), np.asarray(s.action_high, np.float32)
        )
        self._episode: EpisodeBuffer | None = None
        self._t = 0
        self._signals = False

    # -- helpers -----------------------------------------------------------------
    def _obs(self, reading: RobotReading) -> dict[str, Any]:
        assert self._episode is not None
        self._episode.observe(reading.images, reading.state)
        return {
            "images": {c: np.asarray(reading.images[c], np.uint8) for c in self.robot.info.cameras},
            "state": np.asarray(reading.state, dtype=np.float64),
            "instruction": self.task.instruction,
        }

    def _episode_safety(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        events = [
            {"kind": e.kind, "reason": e.reason, "time": e.time, **e.detail}
            for e in self.stack.log.take()
        ]
        self._episode_events += events
        return self._episode_events, dict(Counter(e["kind"] for e in self._episode_events))

    def _end(self, outcome: str, **meta: Any) -> Path:
        """Write the episode (``outcome``: success | failure | discarded) and close it."""
        assert self._episode is not None
        events, counts = self._episode_safety()
        path = self.recorder.write(
            self._episode, outcome, safety_events=events, safety_counts=counts,
            dry_run=self.stack.dry_run is not None, **meta,
        )  # fmt: skip
        self._episode = None
        return path

    def _discard(self, reason: str) -> EpisodeDiscarded:
        self.robot.stop()
        path = self._end("discarded", reason=reason)
        log.warning("episode discarded (%s), recorded as %s", reason, path)
        return EpisodeDiscarded(reason)

    # -- gymnasium API -------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        i = requested_init_state(
            options,
            len(self.task.scenes),
            self.np_random,
            backend="real_robot",
            task=self.task.name,
        )
        scene = self.task.scenes[i]
        if not self._signals:
            self._signals = self.stack.estop.install()
        if self._episode is not None:  # the caller moved on before the episode's end
            self._discard(f"reset after {self._t} of {self.task.max_steps} steps, unlabelled")
        self.robot.stop()
        self.stack.log.take()  # what happened between episodes is not this episode's
        self._episode_events: list[dict[str, Any]] = []
        self._t = 0
        self._episode = EpisodeBuffer(self.task.name, scene, -1 if seed is None else int(seed))
        try:
            if not self.robot.prepare_scene(scene, 0 if seed is None else int(seed)):
                self.operator.confirm_scene(
                    self.task.name, scene, self.task.scene_notes.get(scene, "")
                )
            reading = self.robot.read()
        except RobotLinkError as exc:
            raise self._discard(f"robot link lost at reset: {exc}") from exc
        return self._obs(reading), {"success": False, "metrics": {}}

    def step(self, action: np.ndarray):
        if self._episode is None:
            raise RuntimeError("step() before reset() (or after the episode ended)")
        self._episode.act(action)
        dry = self.stack.dry_run
        n_checked = 0 if dry is None else len(dry.sent)
        try:
            self.robot.send(np.asarray(action, dtype=np.float64))
            reading = self.robot.read()
        except RobotLinkError as exc:
            raise self._discard(f"robot link lost: {exc}") from exc
        except EmergencyStopped:
            self._discard("emergency stop")
            raise
        self._t += 1
        if dry is not None:  # what would have been sent (nothing when a check dropped it)
            self._episode.checked.append(
                dry.sent[-1] if len(dry.sent) > n_checked else np.full(len(action), np.nan)
            )
        obs = self._obs(reading)
        detected = self.success_source == "detector" and bool(self.detector(reading))
        terminated, truncated = detected, self._t >= self.task.max_steps and not detected
        success = detected
        if terminated or truncated:
            self.robot.stop()
            labeller = "detector"
            if self.success_source == "operator":
                verdict = self.operator.label(self.task.name, self._episode.scene)
                if verdict == TOOK_OVER:
                    raise self._discard("the operator took over")
                success, labeller = verdict == SUCCESS, "operator"
                terminated, truncated = success, not success
            self._end("success" if success else "failure", labelled_by=labeller)
            counts = dict(Counter(e["kind"] for e in self._episode_events))
        else:
            counts = self._episode_safety()[1]
        metrics = {f"safety/{kind}": n for kind, n in sorted(counts.items())}
        return obs, float(success), terminated, truncated, {"success": success, "metrics": metrics}

    def close(self) -> None:
        if self._episode is not None:  # the run stopped mid-episode (e-stop, Ctrl-C, error)
            self._discard(f"the run stopped after {self._t} steps")
        self.stack.close()
