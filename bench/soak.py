"""Soak test: a long `ript train` run, its resources sampled from outside.

Starts ``python -m ript_core train`` on a small config of the chosen backend
(every phase of the loop runs: rollouts, the update, evaluations every
``--eval-every`` iterations, checkpoints every ``--checkpoint-every``, old
checkpoints deleted) and samples, every ``--interval`` seconds, each process
of its tree (the trainer and its env workers): resident memory, open file
descriptors, threads, child processes, and the GPU memory of each process
where ``nvidia-smi`` exists. The iteration comes from the run's
``metrics.jsonl``. The result file gives, per series, the first and last
value and the growth per iteration (least-squares slope over the iterations
after the first ``--warmup`` ones), so a leak reads as a slope well above
the noise of a flat series.

    nice -n 15 python bench/soak.py toy --iterations 1000
    VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.json \
        nice -n 15 python bench/soak.py maniskill --iterations 200

On a GPU machine add ``--set policy.device=cuda``. Results:
``bench/results/soak_<backend>.json`` (samples beside it as ``.jsonl``);
docs/reliability.md reads them. A run stopped early (``--max-wall-s``, or
killed) still leaves its samples and a summary of the length it reached.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

# the smallest settings that still run every phase: groups are kept even when
# all K rewards agree (a random policy rarely succeeds), so every iteration updates
COMMON: dict[str, Any] = {
    "seed": 0,
    "torch_threads": 1,
    "ript": {
        "group_size": 2,
        "groups_per_iteration": 1,
        "max_sampling_rounds": 1,
        "keep_uninformative_groups": True,
    },
    "update": {"ppo_epochs": 1, "micro_batch": 16},
    "optim": {"lr": 1.0e-4},
    "eval": {"episodes_per_init_state": 1},
    "keep_checkpoints": 2,
    "tensorboard": True,
}
BACKENDS: dict[str, dict[str, Any]] = {
    "toy": {
        "policy": {
            "preset": "pi0-tiny",
            "logp_horizon": 5,
            "logp_action_dims": 3,
            "action_dim": 3,
            "state_dim": 3,
        },
        "env": {
            "backend": "toy",
            "tasks": ["reach-red"],
            "train_init_states": "0:150",
            "eval_init_states": "150:154",
            "max_steps": 15,
        },
        "rollout": {"n_workers": 0, "in_process_envs": 2},
    },
    "maniskill": {
        "policy": {
            "preset": "pi0-tiny",
            "logp_horizon": 5,
            "logp_action_dims": 7,
            "action_dim": 7,
            "state_dim": 8,
        },
        "env": {
            "backend": "maniskill",
            "tasks": ["PushCube"],
            "train_init_states": "0:800",
            "eval_init_states": "900:902",
            "options": {"image_size": 32, "hand_camera": False},
            "max_steps": 10,
        },
        # env worker processes: their memory, fds and restarts are what a soak watches
        "rollout": {"n_workers": 1},
    },
}


def soak_config(backend: str, run_dir: Path, iterations: int, ns: argparse.Namespace) -> dict:
    cfg = json.loads(json.dumps({**COMMON, **BACKENDS[backend]}))
    cfg["run_dir"] = str(run_dir)
    cfg["ript"]["iterations"] = iterations
    cfg["eval"]["every"] = ns.eval_every
    cfg["checkpoint_every"] = ns.checkpoint_every
    return cfg


def process_tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def gpu_memory_mb() -> dict[int, float]:
    """pid -> MiB of GPU memory (nvidia-smi's compute apps); {} without a GPU."""
    if shutil.which("nvidia-smi") is None:
        return {}
    out = subprocess.run(
        ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    rows = [line.split(",") for line in out.splitlines() if line.strip()]
    return {int(pid): float(mb) for pid, mb in rows}


def sample(root: psutil.Process, iteration: int, t0: float) -> dict[str, Any]:
    procs = []
    gpu = gpu_memory_mb()
    for p in process_tree(root):
        try:
            with p.oneshot():
                procs.append(
                    {
                        "pid": p.pid,
                        "name": p.name(),
                        "rss_mb": p.memory_info().rss / 2**20,
                        "fds": p.num_fds(),
                        "threads": p.num_threads(),
                        "children": len(p.children()),
                        "gpu_mb": gpu.get(p.pid, 0.0),
                    }
                )
        except psutil.NoSuchProcess:  # a worker that ended between listing and reading
            continue
    return {
        "t_s": time.time() - t0,
        "iteration": iteration,
        "processes": len(procs),
        "rss_mb": sum(p["rss_mb"] for p in procs),
        "trainer_rss_mb": procs[0]["rss_mb"] if procs else 0.0,
        "fds": sum(p["fds"] for p in procs),
        "threads": sum(p["threads"] for p in procs),
        "gpu_mb": sum(p["gpu_mb"] for p in procs),
        "per_process": procs,
    }


def last_iteration(metrics: Path) -> int:
    if not metrics.exists():
        return 0
    with metrics.open("rb") as f:
        f.seek(max(0, f.seek(0, 2) - 8192))
        lines = [x for x in f.read().decode(errors="replace").splitlines() if x.strip()]
    for line in reversed(lines):
        try:
            return int(json.loads(line)["iteration"])
        except (ValueError, KeyError):
            continue  # a line cut by the seek, or being written
    return 0


SERIES = ("rss_mb", "trainer_rss_mb", "fds", "threads", "processes", "gpu_mb")


def summarise(samples: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    # the slopes leave out the warm-up and the samples logged at the last
    # iteration: the final evaluation and the exit tear processes down
    last = max((s["iteration"] for s in samples), default=0)
    late = [s for s in samples if warmup <= s["iteration"] < last and s["processes"]]
    out: dict[str, Any] = {}
    for name in SERIES:
        values = [s[name] for s in samples]
        entry: dict[str, Any] = {
            "first": values[0] if values else None,
            "last": values[-1] if values else None,
            "max": max(values) if values else None,
        }
        its = np.array([s["iteration"] for s in late], dtype=float)
        if len(late) >= 3 and np.ptp(its) > 0:
            ys = np.array([s[name] for s in late], dtype=float)
            slope, intercept = np.polyfit(its, ys, 1)
            entry["growth_per_iteration"] = float(slope)
            entry["residual_std"] = float(np.std(ys - (slope * its + intercept)))
            entry["late_first"], entry["late_last"] = float(ys[0]), float(ys[-1])
        out[name] = entry
    return out


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def watch(
    proc: psutil.Popen,
    run_dir: Path,
    ns: argparse.Namespace,
    samples: list[dict[str, Any]],
    sink: Any,
    t0: float,
) -> None:
    """Sample ``proc``'s tree every ``ns.interval`` s until it ends or ``--max-wall-s``."""
    while proc.poll() is None:
        s = sample(proc, last_iteration(run_dir / "metrics.jsonl"), t0)
        samples.append(s)
        sink.write(json.dumps(s) + "\n")
        sink.flush()
        if ns.max_wall_s and time.time() - t0 > ns.max_wall_s:
            return
        time.sleep(ns.interval)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("backend", choices=sorted(BACKENDS))
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--warmup", type=int, default=20, help="iterations left out of the slopes")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--checkpoint-every", type=int, default=25)
    p.add_argument("--max-wall-s", type=float, default=None, help="stop the run after this")
    p.add_argument("--run-dir", default=None, help="default: runs/soak-<backend>")
    p.add_argument("--out", default=None, help="default: bench/results/soak_<backend>.json")
    p.add_argument("--set", action="append", default=[], help="extra config overrides k=v")
    p.add_argument(
        "--resummarise",
        action="store_true",
        help="recompute the series of an existing result from its samples file; run nothing",
    )
    ns = p.parse_args()
    if ns.resummarise:
        out = Path(ns.out or f"bench/results/soak_{ns.backend}.json")
        result = json.loads(out.read_text())
        lines = out.with_suffix(".jsonl").read_text().splitlines()
        result["series"] = summarise([json.loads(x) for x in lines], result["warmup_iterations"])
        out.write_text(json.dumps(result, indent=2) + "\n")
        return 0

    run_dir = Path(ns.run_dir or f"runs/soak-{ns.backend}")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    config = run_dir.parent / f"{run_dir.name}.yaml"
    config.write_text(yaml.safe_dump(soak_config(ns.backend, run_dir, ns.iterations, ns)))
    out = Path(ns.out or f"bench/results/soak_{ns.backend}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    samples_path = out.with_suffix(".jsonl")
    command = [sys.executable, "-m", "ript_core", "train", str(config), "--quiet", *ns.set]
    log_path = run_dir.parent / f"{run_dir.name}.log"
    t0 = time.time()
    # a soak stopped with SIGTERM still stops its run and writes what it measured
    signal.signal(signal.SIGTERM, _interrupt)
    with log_path.open("w") as log, samples_path.open("w") as sink:
        proc = psutil.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        samples: list[dict[str, Any]] = []
        stopped = None
        try:
            watch(proc, run_dir, ns, samples, sink, t0)
        except KeyboardInterrupt:
            stopped = "stopped by a signal"
        if proc.poll() is None:
            stopped = stopped or f"stopped by --max-wall-s {ns.max_wall_s:.0f}"
            proc.terminate()
            proc.wait(60)
    reached = last_iteration(run_dir / "metrics.jsonl")
    result = {
        "command": " ".join(["python bench/soak.py", *sys.argv[1:]]),
        "config": soak_config(ns.backend, run_dir, ns.iterations, ns),
        "iterations_wanted": ns.iterations,
        "iterations_reached": reached,
        "exit_code": proc.returncode,
        "stopped": stopped,
        "wall_s": time.time() - t0,
        "s_per_iteration": (time.time() - t0) / max(reached, 1),
        "samples": len(samples),
        "warmup_iterations": ns.warmup,
        "machine": f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cpus",
        "load_average": list(psutil.getloadavg()),
        "series": summarise(samples, ns.warmup),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
