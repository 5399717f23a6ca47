"""Variants of the toy demo's recipe, each under several CPU kernel settings,
run in parallel (one single-threaded process each) to see how far a result
depends on the processor's float kernels rather than on the recipe.

Kernel settings stand in for other processors: ``ATEN_CPU_CAPABILITY=default``
(torch's scalar kernels instead of AVX2/AVX-512) and ``MKL_CBWR=COMPATIBLE``
(MKL's conditional-reproducibility path) each change the rounding of a run.

    python bench/toy_recipe_sweep.py --limit-s 520 \\
        --common "ript.iterations=40 optim.schedule=constant eval.every=20" \\
        --variant base= --variant dn05=bc.demo_noise=0.5 \\
        --kernels native,aten-default --out sweep.json

Each variant is a space-separated list of ``section.key=value`` overrides of
``toy_demo.yaml``; the output lists every run's held-out evaluations and
per-iteration training success. Runs still going at ``--limit-s`` are stopped
and reported with what they logged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

KERNELS = {
    "native": {},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "mkl-compatible": {"MKL_CBWR": "COMPATIBLE"},
    # an AVX2-only processor's code paths on an AVX-512 one
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def run_one(run_dir: str, overrides: list[str]) -> None:
    from importlib import resources

    from ript_core.config import load_config
    from ript_core.rl.config import TrainConfig
    from ript_core.rl.trainer import Trainer

    fixed = [f"run_dir={run_dir}", "tensorboard=false", "checkpoint_every=100000"]
    with resources.as_file(resources.files("ript_core.configs") / "toy_demo.yaml") as path:
        cfg = load_config(TrainConfig, path, [*fixed, *overrides])
    with Trainer(cfg, progress=False) as trainer:
        trainer.run()


def read_metrics(run_dir: Path) -> tuple[list, list, list, dict]:
    evals, train, seconds = [], [], []
    bc: dict = {"checks": []}
    path = run_dir / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        if "bc/check_success" in row:
            bc["checks"].append((row["bc/step"], row["bc/check_success"]))
        if "bc/steps" in row:
            bc["steps"] = row["bc/steps"]
        if "eval/success_rate" in row:
            evals.append((row["iteration"], row["eval/success_rate"]))
        if "train/success_rate" in row:
            train.append(round(row["train/success_rate"], 3))
        if "time/iteration_s" in row:
            seconds.append(row["time/iteration_s"])
    return evals, train, seconds, bc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--limit-s", type=float, default=520.0)
    p.add_argument("--common", default="", help="overrides every variant gets")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES")
    p.add_argument("--kernels", default="native,aten-default", help=f"of {sorted(KERNELS)}")
    p.add_argument("--work", default="/tmp/toy_recipe_sweep", help="run directories")
    p.add_argument("--out", required=True, help="results JSON")
    p.add_argument("--one", nargs="+", help=argparse.SUPPRESS)  # internal: a single run
    ns = p.parse_args()
    if ns.one:
        run_one(ns.one[0], ns.one[1:])
        return
    procs = []
    for spec in ns.variant or ["base="]:
        name, _, overrides = spec.partition("=")
        for kernel in ns.kernels.split(","):
            run_dir = Path(ns.work) / f"{name}__{kernel}"
            env = {**os.environ, **KERNELS[kernel], "OMP_NUM_THREADS": "1"}
            argv = [sys.executable, __file__, "--out", "-", "--one", str(run_dir)]
            argv += [*ns.common.split(), *overrides.split()]
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            with open(f"{run_dir}.log", "w") as log:
                proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            procs.append((name, kernel, run_dir, proc))
    start = time.time()
    ended: dict[int, float] = {}  # proc index -> wall seconds at exit
    while time.time() - start < ns.limit_s and len(ended) < len(procs):
        time.sleep(5)
        for i, (*_, proc) in enumerate(procs):
            if i not in ended and proc.poll() is not None:
                ended[i] = time.time() - start
    results = []
    for i, (name, kernel, run_dir, proc) in enumerate(procs):
        finished = proc.poll() is not None
        if not finished:
            proc.kill()
        evals, train, seconds, bc = read_metrics(run_dir)
        results.append(
            {
                "variant": name,
                "kernels": kernel,
                "finished": finished,
                # wall time of the whole run (startup, BC, evaluations), to within 5 s
                "wall_s": round(ended.get(i, time.time() - start)),
                "iterations_reached": len(seconds),
                "mean_iteration_s": round(sum(seconds) / len(seconds), 2) if seconds else None,
                "bc": bc,
                "eval": evals,
                "train": train,
            }
        )
        print(name, kernel, "finished" if finished else "stopped", evals)
    meta = {"cpu": _cpu_model(), "common": ns.common, "limit_s": ns.limit_s}
    Path(ns.out).write_text(json.dumps({"meta": meta, "runs": results}, indent=1))


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
