"""RIPT iteration time and throughput on 1..N GPUs (or gloo CPU ranks), DDP and
FSDP, with the real trainer under ``torchrun`` (issue 9).

Usage (a GPU host; every GPU it has, up to 8; what docs/benchmarks.md asks for)::

    PYTHONPATH=. python bench/multigpu_scaling.py --out bench/results

CPU, gloo, the multi-process code path with the tiny policy (minutes)::

    PYTHONPATH=. python bench/multigpu_scaling.py --cpu --ranks 1,2 --out bench/results

For each N in ``--ranks`` and each mode in ``--modes`` it writes a training
config, launches ``python -m torch.distributed.run --standalone
--nproc_per_node N -m ript_core train <config>`` (no ``ript`` console script
needed: ``ript_core/__main__.py`` is the CLI), waits, and reads back what the
trainer logged: ``metrics.jsonl`` (one line per iteration, ``time/*`` keys) and
``plan.json`` (every rank's plan). The run is a fixed amount of work per
rank (weak scaling): random weights, the toy backend, ``groups`` groups of
``group_size`` rollouts per rank and iteration, kept whatever their rewards
(``ript.keep_uninformative_groups``), one PPO epoch, one optimizer step per
iteration, no checkpoints, ``update.time_comm`` on. Env workers per rank:
``cores // N`` (``--workers``). Torch threads per rank (``--threads``):
``cores // N`` on GPUs; 1 with ``--cpu``, where the ranks compute on the
cores themselves: the N=1 baseline then has what each of N ranks has (the
efficiency's premise), and OpenMP threads spinning on a shared machine's
busy cores do not slow one run by 10-50x (measured: 2 threads + 2 env
workers on 2 loaded cores, 0.4-21 s per identical iteration).

Definitions (the table's columns):

- iteration s: ``time/iteration_s``, rank 0's wall time of one iteration
  (sampling + update + the metric reduction; evaluation excluded), mean over
  the timed iterations (the first ``--warmup`` are dropped: CUDA graph
  capture, allocator and NCCL warm-up);
- samples/s: env steps collected by all ranks in the timed iterations divided
  by their summed iteration time (``train/env_steps`` is the mean over ranks,
  times N); rollouts/s and decisions/s (policy chunks the update re-scores)
  alike;
- scaling efficiency: samples/s(N) / (N x samples/s(1)), the N=1 run of the
  same mode as the baseline (goal: >= 0.9);
- update comm share: (gradient all-reduce + FSDP all-gather + reduce-scatter
  seconds) / update seconds, from ``time/update_comm_*``
  (:mod:`ript_core.rl.commtime`); FSDP's collectives may overlap compute on
  a GPU, so there the share bounds the exposed cost from above. ``wait`` is
  the barrier before the all-reduce (ranks that finished their micro-batches
  early), reported apart: it is imbalance, not transfer;
- plan: what the planner chose on each rank (``plan.json``), identical ranks
  shown once.

One process never shards: ``update.distributed=fsdp`` with N=1 runs plain
(the trainer resolves it to ddp; the row says so). The trainer refuses FSDP
with a bf16 policy, so FSDP rows use ``--fsdp-dtype`` (float32).

Where ript-core is not pip-installed (the GPU machine: ``PYTHONPATH=.``) the
toy backend's entry point does not exist; the script then writes a
two-file ``dist-info`` shim into the work directory and puts it on the
children's ``PYTHONPATH``.

Writes ``<out>/multigpu_scaling_<device>.json`` (the exact command, every
run's config, plan, per-iteration times and the table) and prints the
markdown table. ``--append`` merges into an existing file (replacing rows of
the same N and mode), so the runs can be split over several calls.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MODES = ("ddp", "fsdp")
COMM_KINDS = ("all_reduce", "all_gather", "reduce_scatter")  # transfer, not "wait"


# -- launching -----------------------------------------------------------------------
def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def toy_entry_point_shim(work: Path) -> Path | None:
    """A ``dist-info`` directory declaring the toy backend's entry point, or
    None when an installed ript-core already declares it."""
    names = {ep.name for ep in metadata.entry_points(group="ript_core.plugins")}
    if "toy" in names:
        return None
    shim = work / "entry_point_shim"
    info = shim / "ript_core-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ript-core\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[ript_core.plugins]\ntoy = ript_core.envs.toy.plugin\n")
    return shim


def make_config(
    args: argparse.Namespace, mode: str, n: int, run_dir: Path, cores: int
) -> dict[str, Any]:
    """The training config of one (N, mode) run: a fixed workload per rank."""
    per_rank = max(1, cores // n)
    workers = per_rank if args.workers == "auto" else int(args.workers)
    threads = rank_threads(args, n, cores)
    update: dict[str, Any] = {
        "distributed": mode,
        "ppo_epochs": 1,
        "mini_batches": 1,
        "time_comm": True,
    }
    if args.micro_batch:
        update["micro_batch"] = args.micro_batch
    return {
        "run_dir": str(run_dir),
        "seed": 0,
        "policy": {
            "preset": args.preset,
            "dtype": args.fsdp_dtype if mode == "fsdp" else args.dtype,
            "device": "cpu" if args.cpu else "cuda",
            "strategy": args.strategy,
            # the toy env's [x, y, grip] actions and proprio state
            "action_dim": 3,
            "state_dim": 3,
            "logp_horizon": args.replan_every,
            "logp_action_dims": 3,
        },
        "env": {
            "backend": "toy",
            "tasks": ["reach-red"],
            "train_init_states": "0:150",
            # one held-out episode per rank before and after (not timed)
            "eval_init_states": f"150:{150 + n}",
            "replan_every": args.replan_every,
            "max_steps": args.max_steps,
        },
        "rollout": {"n_workers": workers},
        "ript": {
            "iterations": args.warmup + args.iterations,
            "group_size": args.group_size,
            "groups_per_iteration": args.groups,
            "max_sampling_rounds": 1,
            "oversample": 1.0,
            "keep_uninformative_groups": True,
        },
        "update": update,
        "bc": {"demos_per_task": 0, "steps": 0},
        "eval": {"episodes_per_init_state": 1},
        "checkpoint_every": 0,
        "tensorboard": False,
        "torch_threads": threads,
    }


def rank_threads(args: argparse.Namespace, n: int, cores: int) -> int:
    if args.threads != "auto":
        return int(args.threads)
    return 1 if args.cpu else max(1, cores // n)


def launch_command(n: int, config: Path, overrides: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
        "-m", "ript_core", "train", str(config), *overrides, "--quiet",
    ]  # fmt: skip


def child_env(args: argparse.Namespace, n: int, shim: Path | None, cores: int) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO), *([str(shim)] if shim else []), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["OMP_NUM_THREADS"] = str(rank_threads(args, n, cores))
    if args.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # gloo and CPU tensors even on a GPU host
    return env


# -- reading a run back ----------------------------------------------------------------
def read_iterations(run_dir: Path) -> list[dict[str, Any]]:
    """The per-iteration lines of ``metrics.jsonl`` (evaluation lines left out)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return sorted((d for d in lines if "time/iteration_s" in d), key=lambda d: d["iteration"])


def summarize_run(iterations: list[dict[str, Any]], n: int, warmup: int) -> dict[str, Any]:
    """Throughput and time split of one run from its logged iterations.

    ``train/*`` and ``ript/*`` are means over ranks (the trainer averages
    them), so global counts are ``n`` times them; ``time/iteration_s`` is
    rank 0's; other ``time/*`` keys are means over ranks.
    """
    timed = iterations[warmup:]
    if not timed:
        raise ValueError(f"no timed iterations: {len(iterations)} logged, {warmup} warm-up")

    def total(key: str, scale: float = 1.0) -> float:
        return sum(float(d.get(key, 0.0)) for d in timed) * scale

    wall = total("time/iteration_s")
    update = total("time/update_s")
    comm = {k: total(f"time/update_comm_{k}_s") for k in (*COMM_KINDS, "wait")}
    comm_update = sum(comm[k] for k in COMM_KINDS)
    k = len(timed)
    return {
        "timed_iterations": k,
        "iteration_s": wall / k,
        "iteration_s_each": [d["time/iteration_s"] for d in timed],
        "rollout_s": total("time/rollout_s") / k,
        "rollout_wait_s": total("time/rollout_wait_s") / k,
        "update_s": update / k,
        "env_steps_per_iteration": total("train/env_steps", n) / k,
        "rollouts_per_iteration": total("train/episodes", n) / k,
        "decisions_per_iteration": total("ript/decisions", n) / k,
        "samples_per_s": total("train/env_steps", n) / wall,
        "rollouts_per_s": total("train/episodes", n) / wall,
        "decisions_per_s": total("ript/decisions", n) / wall,
        "update_comm_s": {key: v / k for key, v in comm.items()},
        "update_comm_share": comm_update / update if update > 0 else 0.0,
        "rollout_gather_s": total("time/rollout_comm_all_gather_s") / k,
        "comm_share_of_iteration": (comm_update + total("time/rollout_comm_all_gather_s")) / wall,
        "optimizer_steps": total("update/optimizer_steps") / k,
        # rank 0's measured peaks (CUDA only), the largest over the timed iterations
        "memory_peak_gb": {
            phase: max(
                (d[f"memory/{phase}_peak_gb"] for d in timed if f"memory/{phase}_peak_gb" in d),
                default=None,
            )
            for phase in ("rollout", "update")
        },
    }


def add_efficiency(runs: list[dict[str, Any]]) -> None:
    """``efficiency = samples/s(N) / (N x samples/s(1))``, N=1 of the same mode
    as the baseline (of any mode if that one is missing: one process runs the
    same plain code whatever the mode asks)."""
    ok = [r for r in runs if r.get("status") == "ok"]
    base_any = next((r for r in ok if r["n"] == 1), None)
    for r in runs:
        if r.get("status") != "ok":
            r["efficiency"] = None
            continue
        base = next((b for b in ok if b["n"] == 1 and b["mode"] == r["mode"]), base_any)
        if base is None:
            r["efficiency"] = None
            r["baseline"] = None
            continue
        r["baseline"] = f"N=1 {base['mode']}"
        one = base["summary"]["samples_per_s"]
        r["efficiency"] = r["summary"]["samples_per_s"] / (r["n"] * one) if one else None


def root_cause(lines: list[str]) -> str:
    """The first error a rank printed, with the lines it wraps onto (``ript``
    prints ``error: ...``; Python ``SomeError: ...``); torchrun's own summary
    (a ``ChildFailedError``) names no cause. Else the last line."""
    start = re.compile(r"^\s*([\w.]*(Error|Exception)\b:?|error:)")
    stop = re.compile(r"^\s*$|^[WEIF]\d{4} |^Traceback|^\s*[\w.]*(Error|Exception)\b|^error:")
    for i, line in enumerate(lines):
        if start.match(line) and "ChildFailedError" not in line:
            text = [line.strip()]
            for more in lines[i + 1 : i + 4]:
                if stop.match(more):
                    break
                text.append(more.strip())
            return " ".join(text)
    return lines[-1].strip() if lines else "no output"


def plan_text(plan: dict[str, Any] | None) -> str:
    if not plan:
        return "-"
    texts = []
    for p in plan["ranks"]:
        peak = max(p["predicted_peak_gb"].values()) if p["predicted_peak_gb"] else 0.0
        texts.append(
            f"env workers {p['env_workers'] or p['in_process_envs']}, inference batch "
            f"{p['inference_batch']}, micro-batch {p['micro_batch']}, pipeline "
            f"{p['pipeline_groups']}, peak {peak:.3g}/{p['usable_gb']:.3g} GB"
        )
    if len(set(texts)) == 1:
        return f"{texts[0]} (each of {len(texts)})"
    return "; ".join(f"rank {i}: {t}" for i, t in enumerate(texts))


def markdown_table(runs: list[dict[str, Any]]) -> str:
    head = (
        "| N | mode (ran as) | dtype | iteration s | rollout s | update s | env steps / iter "
        "| samples/s | rollouts/s | scaling eff. | update comm share | all-reduce s "
        "| all-gather s | reduce-scatter s | wait s | planner per rank |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in sorted(runs, key=lambda r: (MODES.index(r["mode"]), r["n"])):
        if r.get("status") != "ok":
            why = (r.get("error") or "").replace("|", "/").replace("\n", " ")[:160]
            rows.append(
                f"| {r['n']} | {r['mode']} | {r.get('dtype', '-')} | {r['status']}: {why} "
                "| | | | | | | | | | | | |"
            )
            continue
        s, c = r["summary"], r["summary"]["update_comm_s"]
        ran = r.get("resolved_mode") or "?"
        eff = "-" if r.get("efficiency") is None else f"{r['efficiency']:.2f}"
        rows.append(
            f"| {r['n']} | {r['mode']} ({ran}) | {r['dtype']} | {s['iteration_s']:.3g} "
            f"| {s['rollout_s']:.3g} | {s['update_s']:.3g} | {s['env_steps_per_iteration']:.0f} "
            f"| {s['samples_per_s']:.3g} | {s['rollouts_per_s']:.3g} | {eff} "
            f"| {s['update_comm_share']:.1%} | {c['all_reduce']:.3g} | {c['all_gather']:.3g} "
            f"| {c['reduce_scatter']:.3g} | {c['wait']:.3g} | {plan_text(r.get('plan'))} |"
        )
    return head + "\n".join(rows) + "\n"


def device_slug(runs: list[dict[str, Any]], cpu: bool) -> str:
    if cpu:
        return "cpu"
    for r in runs:
        if r.get("plan"):
            name = r["plan"]["ranks"][0]["device_name"]
            return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"
    return "gpu"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip() or None
    except OSError:
        return None


# -- one run -----------------------------------------------------------------------
def run_one(
    args: argparse.Namespace, mode: str, n: int, work: Path, shim: Path | None, cores: int
) -> dict[str, Any]:
    name = f"{mode}_n{n}"
    run_dir = work / name
    if run_dir.exists():  # a previous call's run: the trainer refuses checkpoints, not logs
        for f in ("metrics.jsonl", "plan.json", "summary.json"):
            (run_dir / f).unlink(missing_ok=True)
    config = make_config(args, mode, n, run_dir, cores)
    cfg_path = work / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = launch_command(n, cfg_path, args.set)
    record: dict[str, Any] = {
        "n": n,
        "mode": mode,
        "dtype": config["policy"]["dtype"],
        "command": shlex.join(cmd),
        "config": config,
    }
    print(f"[{name}] {shlex.join(cmd)}", flush=True)
    log = work / f"{name}.log"
    start = time.perf_counter()
    try:
        with log.open("w") as fh:
            proc = subprocess.run(
                cmd,
                cwd=REPO,
                env=child_env(args, n, shim, cores),
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=args.timeout,
            )
        rc: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    record["wall_s"] = time.perf_counter() - start
    record["returncode"] = rc
    plan_path = run_dir / "plan.json"
    plan = json.loads(plan_path.read_text()) if plan_path.exists() else None
    record["plan"] = plan
    record["resolved_mode"] = plan["distributed"] if plan else None
    iterations = read_iterations(run_dir)
    record["iterations"] = iterations
    if rc != 0 or len(iterations) <= args.warmup:
        lines = log.read_text().splitlines() if log.exists() else []
        record["status"] = "timeout" if rc == "timeout" else "failed"
        record["error"] = root_cause(lines)
        record["log_tail"] = lines[-40:]
    else:
        record["status"] = "ok"
        record["summary"] = summarize_run(iterations, n, args.warmup)
    print(f"[{name}] {record['status']} in {record['wall_s']:.0f} s", flush=True)
    return record


# -- main ------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cpu", action="store_true", help="gloo ranks on CPU, pi0-tiny")
    p.add_argument("--ranks", default=None, help="process counts (default: 1,2,4,8 up to GPUs)")
    p.add_argument("--modes", default="ddp,fsdp")
    p.add_argument("--preset", default=None, help="default: pi0 (GPU), pi0-tiny (--cpu)")
    p.add_argument("--dtype", default=None, help="ddp rows; default bfloat16 (GPU), float32")
    p.add_argument(
        "--fsdp-dtype", default="float32", help="fsdp rows (the trainer refuses FSDP with bf16)"
    )
    p.add_argument("--strategy", default="full", help="policy.strategy (FSDP needs full)")
    p.add_argument("--iterations", type=int, default=3, help="timed iterations per run")
    p.add_argument("--warmup", type=int, default=1, help="iterations dropped before timing")
    p.add_argument("--groups", type=int, default=2, help="groups per rank and iteration")
    p.add_argument("--group-size", type=int, default=4, help="K rollouts per group")
    p.add_argument("--max-steps", type=int, default=15, help="env steps per episode at most")
    p.add_argument("--replan-every", type=int, default=5)
    p.add_argument("--workers", default="auto", help="env workers per rank; auto: cores // N")
    p.add_argument(
        "--threads", default="auto", help="torch threads per rank; auto: cores // N, 1 (--cpu)"
    )
    p.add_argument("--micro-batch", type=int, default=None, help="default: the planner's")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override"
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    p.add_argument("--work-dir", default=None, help="run directories (default: a temp dir)")
    p.add_argument("--out", default="bench/results")
    p.add_argument("--append", action="store_true", help="merge into an existing result file")
    args = p.parse_args(argv)
    args.preset = args.preset or ("pi0-tiny" if args.cpu else "pi0")
    args.dtype = args.dtype or ("float32" if args.cpu else "bfloat16")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    command = shlex.join(
        ["python", "bench/multigpu_scaling.py", *(sys.argv[1:] if argv is None else argv)]
    )
    cores = usable_cores()
    if args.cpu:
        available = cores
        default_ranks = [1, 2]
    else:
        import torch

        available = torch.cuda.device_count()
        if available == 0:
            raise SystemExit("no CUDA device: pass --cpu for gloo ranks on CPU")
        default_ranks = [1, 2, 4, 8]
    wanted = [int(x) for x in args.ranks.split(",")] if args.ranks else default_ranks
    ranks = [n for n in wanted if n <= available]
    skipped = [n for n in wanted if n > available]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not ranks:
        raise SystemExit(f"modes {bad} unknown (use {MODES}) or no N <= {available} in {wanted}")
    work = Path(args.work_dir or f"/tmp/ript_multigpu_scaling_{os.getpid()}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    shim = toy_entry_point_shim(work)
    load_before = os.getloadavg()
    runs = [run_one(args, mode, n, work, shim, cores) for mode in modes for n in ranks]
    load_after = os.getloadavg()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"multigpu_scaling_{device_slug(runs, args.cpu)}.json"
    commands = [command]
    if args.append and path.exists():
        old = json.loads(path.read_text())
        mine = {(r["n"], r["mode"]) for r in runs}
        runs = [r for r in old["runs"] if (r["n"], r["mode"]) not in mine] + runs
        commands = old["meta"]["commands"] + commands
    add_efficiency(runs)
    table = markdown_table(runs)
    import torch

    result = {
        "meta": {
            "commands": commands,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
            "host": platform.node(),
            "cores": cores,
            # other work on a shared host shows up here (1, 5, 15-minute averages)
            "load_average_before": load_before,
            "load_average_after": load_after,
            "devices_available": available,
            "ranks_skipped_not_enough_devices": skipped,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "entry_point_shim": shim is not None,
            "work_dir": str(work),
            "definitions": {
                "iteration_s": "rank 0's time/iteration_s (sampling + update + metric "
                "reduction, evaluation excluded), mean over timed iterations",
                "samples_per_s": "env steps of all ranks in the timed iterations / their "
                "summed iteration_s",
                "efficiency": "samples_per_s(N) / (N * samples_per_s(1)), N=1 of the same mode",
                "update_comm_share": "(all_reduce + all_gather + reduce_scatter) s / update_s; "
                "wait (barrier before the all-reduce) excluded",
            },
        },
        "runs": runs,
        "table_markdown": table,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
