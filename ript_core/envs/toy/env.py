"""The built-in ``toy`` backend: reach the named block and close the gripper.

Four coloured blocks (red, green, blue, yellow) lie on a unit-square table;
the instruction names one. The policy sees a top-down camera, a wrist camera
and the proprio state ``[x, y, gripper_closed]``. Actions are
``[dx, dy, grip]`` in ``[-1, 1]``: the end effector moves by ``step_size *
(dx, dy)``; ``grip > 0`` closes the gripper. Closing within ``grasp_radius``
of the named block is a success; closing on another block is a failure; both
end the episode. Block positions differ per init state, so a policy needs the
image (where) and the instruction (which) to succeed.

Pure numpy, deterministic, far under a millisecond per step.
"""

from __future__ import annotations

import string
from typing import Any

import gymnasium as gym
import numpy as np

from ript_core.envs.toy.render import COLOURS, render_top, render_wrist

BLOCKS = tuple(COLOURS)
GRID = 4
CHARSET = string.ascii_letters + string.digits + " .,-_'"


class ToyReachEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        target: str = "red",
        *,
        n_init_states: int = 200,
        max_steps: int = 30,
        image_size: int = 64,
        step_size: float = 0.08,
        grasp_radius: float = 0.07,
        block_half: float = 0.05,
        wrist_view: float = 0.5,
        render_mode: str | None = "rgb_array",
    ) -> None:
        if target not in BLOCKS:
            raise ValueError(f"target {target!r} is not one of {BLOCKS}")
        self.target = target
        self.n_init_states = n_init_states
        self.max_steps = max_steps
        self.image_size = image_size
        self.step_size = step_size
        self.grasp_radius = grasp_radius
        self.block_half = block_half
        self.wrist_view = wrist_view
        self.render_mode = render_mode
        self.instruction = f"pick up the {target} block"

        img = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict({"agentview": img, "wrist": img}),
                "state": gym.spaces.Box(0.0, 1.0, (3,), np.float32),
                "instruction": gym.spaces.Text(max_length=64, charset=CHARSET),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self._blocks: dict[str, np.ndarray] = {}
        self._ee = np.zeros(2)
        self._closed = False
        self._t = 0
        self.init_state = -1

    # -- registered init states -------------------------------------------------------
    def init_layout(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Block positions and end-effector start of init state ``index``.

        A pure function of (target, index): the layout never depends on what
        the env did before.
        """
        if not 0 <= index < self.n_init_states:
            raise ValueError(f"init_state {index} out of range [0, {self.n_init_states})")
        rng = np.random.default_rng([BLOCKS.index(self.target), index, 20261125])
        # Blocks sit at the centres of a GRID x GRID table grid: the block
        # layout is then a matter of *which* cell holds *which* colour, the
        # question a small ViT (pi0-tiny sees 4 x 4 patches) can answer.
        cells = rng.choice(GRID * GRID, size=len(BLOCKS), replace=False)
        pos = (np.stack(np.divmod(cells, GRID), axis=1)[:, ::-1] + 0.5) / GRID
        target = pos[BLOCKS.index(self.target)]
        while True:
            ee = rng.uniform(0.05, 0.95, size=2)
            dists = np.linalg.norm(pos - ee, axis=-1)
            if np.min(dists) >= 0.15 and np.linalg.norm(target - ee) >= 0.35:
                return {name: pos[i] for i, name in enumerate(BLOCKS)}, ee

    # -- gymnasium API ------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        index = options.pop("init_state", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; toy knows 'init_state'")
        if index is None:
            index = int(self.np_random.integers(self.n_init_states))
        blocks, ee = self.init_layout(int(index))
        self._blocks, self._ee = blocks, ee.copy()
        self._closed = False
        self._t = 0
        self.init_state = int(index)
        return self._obs(), {"success": False, "init_state": self.init_state}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(3), -1.0, 1.0)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"toy env got a non-finite action {action}")
        self._ee = np.clip(self._ee + self.step_size * a[:2], 0.0, 1.0)
        self._closed = bool(a[2] > 0)
        self._t += 1
        success = False
        terminated = False
        if self._closed:
            dists = {n: float(np.linalg.norm(p - self._ee)) for n, p in self._blocks.items()}
            nearest = min(dists, key=dists.get)
            if dists[nearest] <= self.grasp_radius:
                terminated = True
                success = nearest == self.target
        truncated = not terminated and self._t >= self.max_steps
        info = {"success": success, "init_state": self.init_state}
        return self._obs(), float(success), terminated, truncated, info

    def render(self) -> np.ndarray:
        return render_top(self.image_size, self._blocks, self._ee, self._closed, self.block_half)

    def _obs(self) -> dict[str, Any]:
        return {
            "images": {
                "agentview": self.render(),
                "wrist": render_wrist(
                    self.image_size,
                    self._blocks,
                    self._ee,
                    self._closed,
                    self.block_half,
                    self.wrist_view,
                ),
            },
            "state": np.array([*self._ee, float(self._closed)], dtype=np.float32),
            "instruction": self.instruction,
        }

    # -- privileged access for the scripted expert -----------------------------------
    @property
    def target_position(self) -> np.ndarray:
        return self._blocks[self.target].copy()

    @property
    def ee_position(self) -> np.ndarray:
        return self._ee.copy()
