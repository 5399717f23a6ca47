"""One ManiSkill3 task as a ``gymnasium.Env`` that keeps ript-core's env contract.

ManiSkill is run on its CPU simulation (``sim_backend="cpu"``, one env per
process: the rollout runner's worker owns it) with SAPIEN's renderer
(``render_backend="cpu"``, i.e. Vulkan through whatever driver is installed;
``"none"`` fails at scene build in mani-skill 3.0.1). Control mode is
``pd_ee_delta_pose`` (see ``ript_maniskill.adapters`` for the action layout).

Observations, untranslated (the adapters translate):

- ``images["base"]``: the task's fixed ``base_camera``; ``images["hand"]``:
  the ``hand_camera`` on the gripper (robot ``panda_wristcam``; leave it out
  with ``hand_camera=False``). ``HxWx3 uint8``, upright, ``image_size`` px;
- ``state``: float64 ``[qpos (9: 7 arm joints, 2 finger joints), tcp_pos (3),
  tcp_quat (4, w x y z)]`` (:data:`STATE_LAYOUT`), the TCP pose in the world
  frame, which is the robot base frame shifted by ``(-0.615, 0, 0)``;
- ``instruction``: the task's language instruction.

Init states. ManiSkill draws a task's layout (cube poses, goal, robot joint
noise) from its episode seed. Init state ``i`` is the episode seed
:func:`episode_seed` ``(task, i)``, so it is reproducible and independent of
what the env did before. The ``seed`` passed to :meth:`ManiSkillEnv.reset`
only seeds gymnasium's ``np_random``; it does not change the layout (it
cannot, or "init state i" would mean different scenes for different seeds).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ript_core import checked_action, requested_init_state
from ript_maniskill import catalogue
from ript_maniskill.options import (  # noqa: F401 (re-exported)
    DEFAULT_IMAGE_SIZE,
    ENV_OPTIONS,
    MAX_IMAGE_SIZE,
    check_options,
)
from ript_maniskill.rendering import translate_vulkan_errors

CONTROL_MODE = "pd_ee_delta_pose"
ACTION_DIM = 7
STATE_LAYOUT = {"qpos": slice(0, 9), "tcp_pos": slice(9, 12), "tcp_quat": slice(12, 16)}
STATE_DIM = 16
_SEED_TAG = 0x3A115C  # keeps these seeds apart from other streams seeded by small ints
_CHARSET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,'-_"


def episode_seed(task: str, init_state: int) -> int:
    """ManiSkill's episode seed for init state ``init_state`` of ``task``."""
    key = [_SEED_TAG, catalogue.task_index(task), int(init_state)]
    return int(np.random.SeedSequence(key).generate_state(1)[0] >> 1)  # < 2**31


def _numpy(x: Any) -> np.ndarray:
    """ManiSkill returns batched torch tensors (batch 1 on the CPU sim)."""
    return np.asarray(x.cpu().numpy() if hasattr(x, "cpu") else x)[0]


class ManiSkillEnv(gym.Env):
    """``task`` is a catalogue name, e.g. ``"PickCube"``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str,
        *,
        image_size: int = DEFAULT_IMAGE_SIZE,
        hand_camera: bool = True,
        render: bool = True,
    ) -> None:
        """``render=False`` (not an env option: such an env returns no images and
        so breaks the observation contract) simulates with state observations
        only, ~10x faster; for measuring scripted experts, which read
        privileged state."""
        check_options({"image_size": image_size, "hand_camera": hand_camera})
        self.spec_ = catalogue.locate(task)
        self.task_name = task
        self.instruction = self.spec_.instruction
        self.image_size = image_size
        cameras = {"base": "base_camera", **({"hand": "hand_camera"} if hand_camera else {})}
        self.cameras = cameras if render else {}
        self.n_init_states = catalogue.N_INIT_STATES
        self.step_limit = self.spec_.max_steps
        self.render_mode = "rgb_array"

        img = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict({cam: img for cam in self.cameras}),
                "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float64),
                "instruction": gym.spaces.Text(max_length=256, charset=_CHARSET),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)

        import mani_skill.envs  # noqa: F401  (registers the task ids with gymnasium)

        with translate_vulkan_errors():
            self._env = gym.make(
                self.spec_.env_id,
                obs_mode="rgb" if render else "state_dict",
                control_mode=CONTROL_MODE,
                sim_backend="cpu",
                render_backend="cpu",
                robot_uids="panda_wristcam" if hand_camera else "panda",
                sensor_configs={"width": image_size, "height": image_size},
                num_envs=1,
            ).unwrapped  # no TimeLimit: our per-task step limit applies
            # SAPIEN creates its render device lazily; the first reset is where
            # a missing Vulkan driver shows.
            self._env.reset(seed=episode_seed(task, 0))
        self._raw: dict[str, Any] = {}
        self._skip_images = False
        self._t = 0
        self.init_state = -1

    # -- gymnasium API ------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        index = requested_init_state(
            options, self.n_init_states, self.np_random, backend="maniskill", task=self.task_name
        )
        self._skip_images = False
        self._raw, info = self._env.reset(seed=episode_seed(self.task_name, index))
        self._t = 0
        self.init_state = index
        return self._obs(), {"success": bool(_numpy(info["success"])), "init_state": index}

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        a = checked_action(
            action, ACTION_DIM, f"maniskill ({CONTROL_MODE})",
            "delta tcp xyz, delta axis-angle, gripper", dtype=np.float32,
        )  # fmt: skip
        skip, self._skip_images = self._skip_images and bool(self.cameras), False
        if skip:  # a state-only observation for this step; its images are the last ones
            images = self._raw["sensor_data"]
            mode, self._env._obs_mode = self._env._obs_mode, "state_dict"
            try:
                raw, _, _, _, info = self._env.step(a[None])
            finally:
                self._env._obs_mode = mode
            self._raw = {**raw, "sensor_data": images}
        else:
            self._raw, _, _, _, info = self._env.step(a[None])
        self._t += 1
        success = bool(_numpy(info["success"]))
        truncated = not success and self._t >= self.step_limit
        return (
            self._obs(),
            float(success),
            success,
            truncated,
            {
                "success": success,
                "init_state": self.init_state,
            },
        )

    def skip_next_observation(self) -> None:
        """The next step's images will not be read (``ript_core.envs.unread``):
        ManiSkill computes a state-only observation for it (no sensor render) and
        that step returns the previous images. Its state and success are
        current; the step after it renders from the scene as usual."""
        self._skip_images = True

    def render(self) -> np.ndarray:
        """The base camera image of the last observation (for videos)."""
        if not self._raw:
            raise RuntimeError("render() before reset()")
        return self._image("base_camera")

    def close(self) -> None:
        env = getattr(self, "_env", None)
        if env is not None:
            env.close()
            self._env = None

    # -- privileged access (scripted experts, tests) ------------------------------------
    @property
    def task_env(self) -> Any:
        """The ManiSkill ``BaseEnv`` (cube / goal actors, the agent)."""
        return self._env

    def raw_state(self) -> np.ndarray:
        agent = self._env.agent
        return np.concatenate(
            [_numpy(agent.robot.get_qpos()), _numpy(agent.tcp.pose.raw_pose)]
        ).astype(np.float64)

    # -- helpers ------------------------------------------------------------------------
    def _image(self, camera: str) -> np.ndarray:
        return np.array(_numpy(self._raw["sensor_data"][camera]["rgb"]), dtype=np.uint8)

    def _obs(self) -> dict[str, Any]:
        return {
            "images": {cam: self._image(key) for cam, key in self.cameras.items()},
            "state": self.raw_state(),
            "instruction": self.instruction,
        }
