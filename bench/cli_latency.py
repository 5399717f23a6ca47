"""Wall time of the commands that should answer at once (issue 31).

Runs each command as a user would, the ``ript`` console script in a fresh
process, ``--runs`` times after ``--warmup`` untimed runs (hyperfine's way:
the first runs fill the OS file cache), and reports the median, min and max
wall time, and whether torch was imported. The load average before and after
is recorded: on a shared machine other processes inflate every figure.

    python bench/cli_latency.py --runs 10 --out bench/results/cli_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 1.0


def commands(tmp: Path) -> dict[str, list[str]]:
    unknown = tmp / "unknown_key.yaml"
    unknown.write_text("ript:\n  group_size: 4\n  nosuch_key: 1\n")
    return {
        "ript --help": ["--help"],
        "ript plugins": ["plugins"],
        "ript tasks toy": ["tasks", "toy"],
        "ript train missing.yaml": ["train", str(tmp / "missing.yaml")],
        "ript train unknown_key.yaml": ["train", str(unknown)],
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ript_executable() -> str:
    here = Path(sys.executable).parent / "ript"
    found = str(here) if here.exists() else shutil.which("ript")
    if found is None:
        raise SystemExit("no `ript` console script: pip install -e . first")
    return found


def imports_torch(ript: str, args: list[str]) -> bool:
    """Whether the command imports torch (one more run, under -X importtime)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", ript, *args], capture_output=True, text=True
    )
    return any(line.split("|")[-1].strip() == "torch" for line in proc.stderr.splitlines())


def time_runs(argv: list[str], runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system) of the timed runs. CPU time
    grows far less than wall time when other processes share the cores."""
    wall, cpu = [], []
    for i in range(warmup + runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i >= warmup:
            wall.append(elapsed)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    ript = ript_executable()
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd_args in commands(Path(tmp)).items():
            times, cpu = time_runs([ript, *cmd_args], args.runs, args.warmup)
            rows.append(
                {
                    "command": name,
                    "median_s": round(statistics.median(times), 3),
                    "min_s": round(min(times), 3),
                    "max_s": round(max(times), 3),
                    "median_cpu_s": round(statistics.median(cpu), 3),
                    "runs": len(times),
                    "imports_torch": imports_torch(ript, cmd_args),
                }
            )
    load_after = os.getloadavg()

    print(
        f"| command | median s | min s | max s | median CPU s | torch imported | <= {TARGET_S:g} s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ok = "yes" if r["median_s"] <= TARGET_S else "NO"
        print(
            f"| `{r['command']}` | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} "
            f"| {r['median_cpu_s']:.2f} | {'yes' if r['imports_torch'] else 'no'} | {ok} |"
        )
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1_5_15_before": [round(x, 2) for x in load_before],
        "load_avg_1_5_15_after": [round(x, 2) for x in load_after],
    }
    print(
        f"load average before {meta['load_avg_1_5_15_before']}, after {meta['load_avg_1_5_15_after']}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
