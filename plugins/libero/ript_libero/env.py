"""One LIBERO task as a ``gymnasium.Env`` that keeps ript-core's env contract.

Observations are the simulator's, untranslated (the adapters translate):

- ``images["agentview"]``, ``images["wrist"]``: ``HxWx3 uint8`` exactly as
  robosuite renders them -- upside down (OpenGL's row order);
  :meth:`LiberoEnv.render` returns the upright agent view for videos;
- ``state``: float64 ``[eef_pos (3), eef_quat (4, x y z w), gripper_qpos (2)]``
  (:data:`STATE_LAYOUT`), robosuite's ``robot0_*`` observations;
- ``instruction``: the task's language instruction.

Reset determinism. LIBERO's init states are flattened MuJoCo states, but
``reset()`` also places the fixtures (cabinets, stoves, ...) from the global
``np.random``, and fixture poses live in the model, not in the state that
``set_init_state`` restores: the same init state after another reset history
renders another scene. So :meth:`LiberoEnv.reset` seeds ``np.random`` from
``(suite, task, init state, seed)`` right before LIBERO's ``reset()``: the
scene is a function of those four numbers, whatever the process ran before.
``step()`` draws nothing from ``np.random``.

With the env option ``protocol="openpi"`` the scene follows openpi's LIBERO
evaluation client instead (``examples/libero/main.py``): per task, one env
seeded once with ``np.random.seed(openpi_seed)``, then episode *i* = the *i*-th
``reset()`` followed by ``set_init_state(initial_states[i])``. The scene of
init state *i* is then the one openpi's episode *i* sees. The env keeps that
``np.random`` stream to itself (saved and restored around each reset), and a
reset for init state *i* replays the resets before it that this env has not
done: any worker, asked for any init state in any order, reproduces openpi's
episode *i* (in order on one worker, nothing is replayed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from ript_core import (
    checked_action,
    mujoco_gl,
    requested_init_state,
    robosuite_cameras,
    robosuite_quiet,
    robosuite_state,
)
from ript_libero import catalogue
from ript_libero.options import (  # noqa: F401
    DEFAULT_IMAGE_SIZE,
    ENV_OPTIONS,
    OPENPI_SEED,
    check_options,
)

CAMERAS = {"agentview": "agentview_image", "wrist": "robot0_eye_in_hand_image"}
STATE_LAYOUT = robosuite_state.RAW_LAYOUT
STATE_DIM = robosuite_state.RAW_DIM
# Mixed into the scene seed so that LIBERO scenes do not share a stream with
# anything else seeded from the same small integers.
_SEED_TAG = 0x11BE50
_CHARSET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,'-_"  # instructions


def scene_seed(suite: str, task_index: int, init_state: int, seed: int) -> int:
    """The ``np.random`` seed LIBERO's ``reset()`` runs under for this context."""
    suite_id = list(catalogue.SUITES).index(suite)
    key = [_SEED_TAG, suite_id, task_index, init_state, seed & 0xFFFFFFFF, seed >> 32]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


class LiberoEnv(gym.Env):
    """``task`` is a catalogue name, e.g. ``"libero_goal.put_the_bowl_on_the_plate"``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str,
        *,
        image_size: int = DEFAULT_IMAGE_SIZE,
        protocol: str = "ript",
        openpi_seed: int = OPENPI_SEED,
    ) -> None:
        check_options({"image_size": image_size, "protocol": protocol, "openpi_seed": openpi_seed})
        self.protocol = protocol
        # protocol "openpi": the np.random state right before openpi's k-th reset of
        # this task's env, for every k this env has reached (k = 0: just seeded)
        self._openpi_streams = {0: np.random.RandomState(openpi_seed).get_state()}
        self.task = catalogue.locate(task)
        self.task_name = task
        self.suite_spec = catalogue.SUITES[self.task.suite]
        self.image_size = image_size
        self.instruction = self.task.language
        self.init_states = catalogue.init_states(self.task)
        self.n_init_states = len(self.init_states)
        # openpi's loop bound: the settle steps plus the suite's policy steps
        self.step_limit = catalogue.SETTLE_STEPS + self.suite_spec.max_steps
        self.render_mode = "rgb_array"

        img = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict({cam: img for cam in CAMERAS}),
                "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float64),
                "instruction": gym.spaces.Text(max_length=256, charset=_CHARSET),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (catalogue.ACTION_DIM,), np.float32)

        self.gl_backend = mujoco_gl.select_backend(who="LIBERO")
        with robosuite_quiet.quiet_import():
            from libero.libero.envs import OffScreenRenderEnv  # imports robosuite + mujoco

        self._env = OffScreenRenderEnv(
            bddl_file_name=catalogue.bddl_file(self.task),
            camera_heights=image_size,
            camera_widths=image_size,
        )
        self._raw: dict[str, Any] = {}
        self._skip_images = False
        self._t = 0
        self.init_state = -1
        mujoco_gl.close_at_exit(self)

    # -- gymnasium API ------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        index = requested_init_state(
            options, self.n_init_states, self.np_random, backend="libero", task=self.task_name
        )
        self._skip_images = False
        if self.protocol == "openpi":
            self._reset_as_openpi(index)
        else:
            np.random.seed(scene_seed(self.task.suite, self.task.index, index, seed or 0))
            self._env.reset()
        self._raw = self._env.set_init_state(self.init_states[index])
        self._t = 0
        self.init_state = index
        success = bool(self._env.check_success())
        return self._obs(), {"success": success, "init_state": index}

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        a = checked_action(
            action, catalogue.ACTION_DIM, "LIBERO", "delta eef xyz, delta axis-angle, gripper"
        )
        skip, self._skip_images = self._skip_images, False
        unread = list(CAMERAS.values()) if skip else []
        with robosuite_cameras.frozen(self._env.env, unread):
            self._raw, _, done, _ = self._env.step(a)
        self._t += 1
        success = bool(done)  # LIBERO's done is its success predicate
        truncated = not success and self._t >= self.step_limit
        info = {"success": success, "init_state": self.init_state}
        return self._obs(), float(success), success, truncated, info

    def render(self) -> np.ndarray:
        """The agent-view camera, upright (for videos)."""
        if not self._raw:
            raise RuntimeError("render() before reset()")
        return np.ascontiguousarray(self._raw[CAMERAS["agentview"]][::-1, ::-1])

    def skip_next_observation(self) -> None:
        """Render neither camera in the next step: nobody reads its images
        (``ript_core.envs.unread``); it returns the last ones."""
        self._skip_images = True

    def close(self) -> None:
        env = getattr(self, "_env", None)
        if env is not None:
            env.close()
            self._env = None

    # -- helpers ------------------------------------------------------------------------
    def _reset_as_openpi(self, episode: int) -> None:
        """LIBERO's ``reset()`` as openpi's ``episode``-th one: from the stream
        state before it, after replaying the resets between the latest state
        known and it (their scenes are overwritten; a reset costs seconds)."""
        known = max(k for k in self._openpi_streams if k <= episode)
        outside = np.random.get_state()
        try:
            for k in range(known, episode + 1):
                np.random.set_state(self._openpi_streams[k])
                self._env.reset()
                self._openpi_streams[k + 1] = np.random.get_state()
        finally:
            np.random.set_state(outside)

    def _obs(self) -> dict[str, Any]:
        return to_observation(self._raw, self.instruction)

    @property
    def sim(self) -> Any:
        """The robosuite ``MjSim`` (privileged access for tests and debugging)."""
        return self._env.sim

    @property
    def robosuite_env(self) -> Any:
        return self._env.env


def to_observation(raw: Mapping[str, Any], instruction: str) -> dict[str, Any]:
    """robosuite's observation dict -> this backend's (contract) observation."""
    return {
        "images": {cam: np.array(raw[key], dtype=np.uint8) for cam, key in CAMERAS.items()},
        "state": robosuite_state.raw_state(raw),
        "instruction": instruction,
    }
