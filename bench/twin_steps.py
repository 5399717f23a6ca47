"""Step cost of the real_robot backend's digital twin (the SO-101 pick-cube
MuJoCo env of ``lerobot-env-so101==0.4.0``), with and without shadows.

Usage::

    MUJOCO_GL=egl python bench/twin_steps.py [--size 64] [--steps 30]

Prints the median seconds of one ``env.step`` with the ``front`` camera
rendered at ``--size`` px, with MuJoCo's default shadows and with every
light's shadow off (what ``ript_real_robot.twin.TwinDriver`` does), and one
state-only step. Numbers: docs/backends/real_robot.md.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def median_step_s(image: bool, shadows: bool, size: int, steps: int) -> float:
    import gymnasium as gym
    import lerobot_env_so101  # noqa: F401
    from lerobot_env_so101.mujoco_env import GymRenderingSpec

    env = gym.make("lerobot_env_so101/SO101PickCube-v0", image_obs=image,
                   render_spec=GymRenderingSpec(height=size, width=size)).unwrapped  # fmt: skip
    if not shadows:
        env.model.light_castshadow[:] = 0
    env.reset(seed=0)
    times = []
    for k in range(steps + 3):
        t = time.perf_counter()
        env.step(np.array([0.0, 0.0, 0.1 if k % 2 else -0.1, 1.0], np.float32))
        times.append(time.perf_counter() - t)
    env.close()
    return float(np.median(times[3:]))  # after the renderer's first frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    for label, image, shadows in (("default shadows", True, True), ("shadows off", True, False),
                                  ("state only", False, False)):  # fmt: skip
        print(f"{label:16s} {median_step_s(image, shadows, args.size, args.steps):.4f} s/step")


if __name__ == "__main__":
    main()
