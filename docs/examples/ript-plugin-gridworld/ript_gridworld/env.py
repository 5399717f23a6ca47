"""A grid walk: the agent (white) must reach the goal cell (green)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class GridWalkEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}

    def __init__(
        self, size: int = 5, n_init_states: int = 10, max_steps: int = 20, cell_px: int = 8
    ) -> None:
        self.size, self.n_init_states, self.max_steps = size, n_init_states, max_steps
        self.cell_px = cell_px  # pixels per cell: the env option of the same name
        px = size * cell_px
        self.observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict({"top": gym.spaces.Box(0, 255, (px, px, 3), np.uint8)}),
                "state": gym.spaces.Box(0.0, float(size - 1), (2,), np.float32),
                "instruction": gym.spaces.Text(64, charset="abcdefghijklmnopqrstuvwxyz "),
            }
        )
        # [dx, dy] in [-1, 1]; each component rounds to a move of -1, 0 or +1 cell
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def layout(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Init state ``index``: (agent cell, goal cell), a pure function of the index."""
        if not 0 <= index < self.n_init_states:
            raise ValueError(f"init_state {index} out of range [0, {self.n_init_states})")
        rng = np.random.default_rng(index)
        cells = rng.choice(self.size * self.size, size=2, replace=False)
        return np.array(divmod(cells[0], self.size)), np.array(divmod(cells[1], self.size))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        index = (options or {}).get("init_state")
        if index is None:
            index = int(self.np_random.integers(self.n_init_states))
        self.agent, self.goal = self.layout(int(index))
        self._t = 0
        return self._obs(), {"success": False}

    def step(self, action):
        move = np.rint(np.clip(np.asarray(action, dtype=np.float64), -1, 1)).astype(int)
        self.agent = np.clip(self.agent + move, 0, self.size - 1)
        self._t += 1
        success = bool(np.array_equal(self.agent, self.goal))
        truncated = not success and self._t >= self.max_steps
        return self._obs(), float(success), success, truncated, {"success": success}

    def render(self) -> np.ndarray:
        px = self.cell_px
        img = np.zeros((self.size * px, self.size * px, 3), dtype=np.uint8)
        for (r, c), colour in ((self.goal, (0, 200, 0)), (self.agent, (255, 255, 255))):
            img[r * px : (r + 1) * px, c * px : (c + 1) * px] = colour
        return img

    def _obs(self):
        return {
            "images": {"top": self.render()},
            "state": self.agent.astype(np.float32),
            "instruction": "walk to the green cell",
        }
