"""LIBERO env steps per second per worker process, with rendering, by image size.

Each worker process builds one LIBERO env through the plugin (the way a
rollout worker does), resets it to init state 0, takes a few warm-up steps,
waits for the other workers (a barrier, so that the timed steps of all
workers overlap), then times ``--steps`` env steps with fixed random actions.
Both cameras render at every step (``image_size`` x ``image_size``), what
recording demos pays; ``--render-every 5`` renders every 5th step only, what
a RIPT rollout that replans every 5 steps pays (the rollout worker tells the
env the other steps' observations are unread, ``ript_core.envs.unread``).
Env creation and reset times are reported beside.

    python bench/libero_steps.py --sizes 128,224 --workers 1,2 --steps 60
    python bench/libero_steps.py --sizes 128 --workers 1 --steps 60 --render-every 5

Prints a markdown table. Needs ``pip install -e ".[libero]"``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import time
from typing import Any

import numpy as np

DEFAULT_TASK = "libero_spatial.pick_up_the_black_bowl_between_the_plate_and_the_ramekin_and_place_it_on_the_plate"


def worker(
    task: str,
    size: int,
    steps: int,
    warmup: int,
    seed: int,
    barrier: Any,
    out: Any,
    render_every: int = 1,
) -> None:
    from ript_core import make_env
    from ript_core.envs.unread import skip_next_observation

    t0 = time.perf_counter()
    env = make_env(f"libero/{task}", image_size=size)
    create_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    env.reset(seed=seed, options={"init_state": 0})
    reset_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-0.3, 0.3, (warmup + steps, 7))
    actions[:, 6] = -1.0  # gripper open: the arm wanders without grasping
    for a in actions[:warmup]:
        env.step(a)
    barrier.wait()
    times = []
    for i, a in enumerate(actions[warmup:]):
        t0 = time.perf_counter()
        if (i + 1) % render_every:
            skip_next_observation(env)
        env.step(a)
        times.append(time.perf_counter() - t0)
    env.close()
    out.put(
        {
            "create_s": create_s,
            "reset_s": reset_s,
            "step_ms": 1e3 * statistics.median(times),
            "mean_step_ms": 1e3 * statistics.fmean(times),
            "steps_per_s": len(times) / sum(times),
            "gl": os.environ.get("MUJOCO_GL", "?"),
        }
    )


def run(
    task: str, size: int, n_workers: int, steps: int, warmup: int, render_every: int = 1
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n_workers), ctx.Queue()
    args = (task, size, steps, warmup)
    procs = [
        ctx.Process(target=worker, args=(*args, 100 + i, barrier, out, render_every))
        for i in range(n_workers)
    ]
    load_before = os.getloadavg()[0]
    for p in procs:
        p.start()
    results = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise RuntimeError(f"benchmark worker exited with code {p.exitcode}")
    return {
        "size": size,
        "workers": n_workers,
        "create_s": statistics.mean(r["create_s"] for r in results),
        "reset_s": statistics.mean(r["reset_s"] for r in results),
        "step_ms": statistics.mean(r["step_ms"] for r in results),
        "mean_step_ms": statistics.mean(r["mean_step_ms"] for r in results),
        "per_worker": statistics.mean(r["steps_per_s"] for r in results),
        "total": sum(r["steps_per_s"] for r in results),
        "gl": results[0]["gl"],
        "load": f"{load_before:.1f} → {os.getloadavg()[0]:.1f}",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default=DEFAULT_TASK, help="a `ript tasks libero` name")
    p.add_argument("--sizes", default="128,224", help="camera sizes in pixels, comma-separated")
    p.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    p.add_argument("--steps", type=int, default=60, help="timed steps per worker")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--render-every", type=int, default=1, help="render every Nth step only")
    ns = p.parse_args(argv)
    sizes = [int(s) for s in ns.sizes.split(",")]
    workers = [int(w) for w in ns.workers.split(",")]
    if ns.steps < 1 or min(workers) < 1 or min(sizes) < 16 or ns.render_every < 1:
        p.error("--steps, --workers and --render-every must be >= 1, --sizes >= 16")

    import mujoco

    rows = [
        run(ns.task, s, n, ns.steps, ns.warmup, ns.render_every) for s in sizes for n in workers
    ]
    every = "every step" if ns.render_every == 1 else f"every {ns.render_every}th step"
    print(
        f"> LIBERO env steps: `{ns.task}`, 2 cameras rendered {every}, {ns.steps} timed "
        f"steps per worker after {ns.warmup} warm-up, MUJOCO_GL={rows[0]['gl']}, mujoco "
        f"{mujoco.__version__}, {os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    )
    print()
    print(
        "| image px | workers | env create s | reset s | step ms (median) | step ms (mean) "
        "| steps/s per worker | steps/s total | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['workers']} | {r['create_s']:.1f} | {r['reset_s']:.1f} | "
            f"{r['step_ms']:.0f} | {r['mean_step_ms']:.0f} | {r['per_worker']:.1f} | "
            f"{r['total']:.1f} | {r['load']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
