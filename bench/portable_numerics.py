"""Does a CPU run give the same numbers on another processor?

Runs a short version of the toy demo (its BC warm start, held-out evaluation,
a few RIPT iterations, evaluation) once per ``cpu_numerics`` mode, each in a
fresh process, and prints a digest of everything the run logged except
timings. Run it on two processors with the same torch and numpy: equal
digests mean the same run, bit for bit.

    python bench/portable_numerics.py --out bench/results/portable_numerics_<cpu>.json

``--emulate-avx2`` also runs each mode with MKL limited to AVX2
(``MKL_ENABLE_INSTRUCTIONS=AVX2``), the closest this processor gets to one
without AVX-512.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMING = ("time/", "_per_s", "_frac", "occupancy")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def run(mode: str, iterations: int, work: Path, env_extra: dict[str, str]) -> dict:
    run_dir = work / f"{mode}-{'-'.join(env_extra.values()) or 'all'}"
    overrides = [
        f"run_dir={run_dir}",
        f"cpu_numerics={mode}",
        f"ript.iterations={iterations}",
        "eval.every=0",
        "checkpoint_every=0",
        "tensorboard=false",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR")}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ript_core", "demo", *overrides, "--quiet"],
        env={**env, **env_extra},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: the run failed\n{proc.stdout}\n{proc.stderr}")
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.append({k: v for k, v in row.items() if not any(t in k for t in TIMING)})
    evals = [r["eval/success_rate"] for r in rows if "eval/success_rate" in r]
    text = json.dumps(rows, sort_keys=True)
    return {
        "mode": mode,
        "env": env_extra,
        "digest": hashlib.sha256(text.encode()).hexdigest()[:16],
        "held_out_success": evals,
        "kernels": next((ln for ln in proc.stdout.splitlines() if "CPU kernels" in ln), ""),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--modes", default="native,portable")
    p.add_argument("--emulate-avx2", action="store_true")
    p.add_argument("--out", default=None)
    ns = p.parse_args()
    import numpy
    import torch

    work = Path(tempfile.mkdtemp(prefix="portable_numerics_"))
    results = []
    for mode in ns.modes.split(","):
        for env_extra in [{}] + ([{"MKL_ENABLE_INSTRUCTIONS": "AVX2"}] if ns.emulate_avx2 else []):
            results.append(run(mode, ns.iterations, work, env_extra))
            print(json.dumps(results[-1]), flush=True)
    out = {
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python bench/portable_numerics.py " + " ".join(sys.argv[1:]),
        "runs": results,
    }
    if ns.out:
        Path(ns.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
