"""robosuite env step cost on this machine: physics alone vs rendered cameras.

One process builds a robosuite env through the plugin for each setting,
resets it, takes a few warm-up steps, then times ``--steps`` env steps with
fixed random actions (gripper open). "physics" is the env without cameras
(``render=False``, what the scripted experts use); the others render the
agent view (and the wrist camera) at every step, what recording demos pays.
"rendered every 5th step" is what a RIPT rollout that replans every 5 steps
pays: the rollout worker tells the env that the other steps' observations
are unread (``ript_core.envs.unread``), and robosuite skips their renders;
compare its mean, not its median (4 of 5 steps render nothing).

    python bench/robosuite_steps.py --task Lift --steps 40

Prints a markdown table and writes ``bench/results/robosuite_steps.json``.
Needs ``pip install -e ".[robosuite]"``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

SETTINGS = {  # name -> RobosuiteEnv keyword arguments
    "physics": {"render": False},
    "agentview 64 px": {"image_size": 64, "wrist_camera": False},
    "agentview 64 px, rendered every 5th step": {
        "image_size": 64,
        "wrist_camera": False,
        "render_every": 5,
    },
    "agentview + wrist 64 px": {"image_size": 64},
    "agentview + wrist 128 px (default)": {"image_size": 128},
    "agentview + wrist 256 px": {"image_size": 256},
}


def measure(task: str, kwargs: dict, steps: int, warmup: int) -> dict:
    from ript_robosuite.env import RobosuiteEnv

    kwargs = dict(kwargs)
    render_every = kwargs.pop("render_every", 1)
    t0 = time.perf_counter()
    env = RobosuiteEnv(task, **kwargs)
    create_s = time.perf_counter() - t0
    resets = []
    for i in range(3):
        t0 = time.perf_counter()
        env.reset(seed=0, options={"init_state": i})
        resets.append(time.perf_counter() - t0)
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (warmup + steps, 7))
    actions[:, 6] = -1.0
    for a in actions[:warmup]:
        env.step(a)
    times = []
    for i, a in enumerate(actions[warmup:]):
        t0 = time.perf_counter()
        if (i + 1) % render_every:
            env.skip_next_observation()
        env.step(a)
        times.append(time.perf_counter() - t0)
    env.close()
    return {
        "create_s": round(create_s, 2),
        "reset_ms": round(1e3 * statistics.median(resets), 1),
        "step_ms": round(1e3 * statistics.median(times), 1),
        "mean_step_ms": round(1e3 * statistics.fmean(times), 1),
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--task", default="Lift")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default="bench/results/robosuite_steps.json")
    ns = p.parse_args()
    rows = {name: measure(ns.task, kw, ns.steps, ns.warmup) for name, kw in SETTINGS.items()}
    print(f"| {ns.task} | create s | reset ms | step ms, median | mean |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(
            f"| {name} | {r['create_s']} | {r['reset_ms']} | {r['step_ms']} | {r['mean_step_ms']} |"
        )
    result = {
        "task": ns.task,
        "robosuite": importlib.metadata.version("robosuite"),
        "mujoco": importlib.metadata.version("mujoco"),
        "gl": os.environ.get("MUJOCO_GL", "?"),
        "device": f"CPU ({platform.machine()}), {os.cpu_count()} cores, shared; "
        f"load average at the end {os.getloadavg()[0]:.1f}",
        "command": f"python bench/robosuite_steps.py --task {ns.task} --steps {ns.steps}",
        "settings": rows,
    }
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
