"""Env steps/s and policy-device memory vs the number of env worker processes.

Usage::

    python bench/rollout_scaling.py                                   # toy, pi0-tiny, fp32
    python bench/rollout_scaling.py --preset pi0 --dtype bf16         # full size (needs a GPU)
    python bench/rollout_scaling.py --backend libero --task <task>    # any installed backend

For each worker count (default 1, 2, 4, ... up to the usable cores, and the
core count itself) it starts a fresh ``ProcessEnvPool``, runs one warm-up
episode per worker (builds every worker's env, warms the policy at that
batch size), then times ``episodes-per-worker x N`` episodes of the real
``RolloutRunner`` with ONE batched PI0 policy (``PI0Actor``, SDE sampling as
in training rollouts). Weights are random: the numbers are speed and memory,
not behaviour (random policies end some episodes early by grasping the wrong
block, which the mean episode length column shows).

Memory: on a GPU the peak of ``torch.cuda.max_memory_allocated`` over the
timed run; on CPU the main process's peak RSS over the timed run (VmHWM,
reset through ``/proc/self/clear_refs`` before it). The workers' summed RSS
is shown beside it: N envs of CPU RAM, no model copies. The policy-device
peak should stay flat in N apart from the batch's activations and KV cache.

A backend that is not installed or not available here stops the script with
the reason and a non-zero exit status; nothing is skipped silently.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Only light imports at module level: env workers are spawned, and spawn
# re-imports the main script in every worker, so a module-level
# ``import torch`` would put ~300 MB of torch into each env process and
# distort the workers' RSS column. torch and the policy are imported in main().
from ript_core.envs.catalogue import TaskInfo
from ript_core.plugins import (
    BackendNotFoundError,
    BackendUnavailableError,
    PluginRegistry,
    get_registry,
)
from ript_core.rollout.runner import EpisodeRequest, RolloutRunner, RolloutStats
from ript_core.rollout.workers import ProcessEnvPool, ResetCommand, StepResult

DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def usable_cores() -> int:
    """Cores this process may run on (a container's affinity mask, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_worker_counts(cores: int) -> list[int]:
    counts, n = [], 1
    while n <= cores:
        counts.append(n)
        n *= 2
    if counts[-1] != cores:
        counts.append(cores)
    return counts


def _proc_status_kb(pid: int | str, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) if m else None


class MainPeakRSS:
    """Peak RSS of this process over a window (Linux: VmHWM after a reset)."""

    def __init__(self) -> None:
        self.resettable = True

    def reset(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            # no reset possible: fall back to the whole-process peak and say so
            self.resettable = False

    def peak_mb(self) -> float:
        kb = _proc_status_kb("self", "VmHWM") if self.resettable else None
        if kb is None:
            self.resettable = False
            # ru_maxrss is in kB on Linux, bytes on macOS
            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if sys.platform == "darwin":
                kb //= 1024
        return kb / 1024


def check_backend(reg: PluginRegistry, backend: str, task_names: Sequence[str]) -> list[TaskInfo]:
    """The tasks to run, or exit non-zero saying why the backend can't run here."""
    try:
        reg.require_available(backend)
        catalogue = {t.name: t for t in reg.catalogue(backend)}
    except (BackendNotFoundError, BackendUnavailableError) as exc:
        msg = [f"rollout_scaling: backend {backend!r} cannot run here: {exc}"]
        msg.append(f"installed backends: {', '.join(reg.backends()) or 'none'}")
        for b in reg.broken:
            msg.append(f"plugin {b.name!r} ({b.distribution}) failed to load: {b.error}")
        sys.exit("\n".join(msg))
    if not catalogue:
        sys.exit(f"rollout_scaling: backend {backend!r} has an empty task catalogue")
    names = list(task_names) or [next(iter(catalogue))]
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        sys.exit(
            f"rollout_scaling: backend {backend!r} has no task(s) {unknown}; "
            f"e.g. {', '.join(list(catalogue)[:5])}"
        )
    return [catalogue[n] for n in names]


def probe_state_dim(
    reg: PluginRegistry, backend: str, task: TaskInfo, env_options: dict[str, Any]
) -> int:
    """The proprio dim the policy must normalise, read off one real observation
    in a worker process (building the env here would put a simulator into the
    process whose memory we measure)."""
    obs_adapter, _ = reg.default_adapters(backend, task.name, env_options)
    with ProcessEnvPool(1, timeout_s=600) as pool:
        pool.send(
            0,
            ResetCommand(
                backend,
                task.name,
                0,
                0,
                tuple(sorted(env_options.items())),
                task.settle_steps,
                task.noop_action,
            ),
        )
        [(_, reply)] = pool.collect()
    if not isinstance(reply, StepResult):
        sys.exit(f"rollout_scaling: the probe env for {backend}/{task.name} failed: {reply}")
    return int(obs_adapter(reply.obs).state.shape[-1])


def requests(
    backend: str, tasks: Sequence[TaskInfo], n: int, first_id: int
) -> list[EpisodeRequest]:
    """Contexts round-robin over the tasks, spread over the init states."""
    out = []
    for k in range(n):
        task = tasks[k % len(tasks)]
        i = first_id + k
        out.append(EpisodeRequest(i, backend, task.name, (7 * i) % task.n_init_states, seed=i))
    return out


def parse_env_options(items: Sequence[str]) -> dict[str, Any]:
    import yaml  # values typed as YAML would type them: 64 -> int, true -> bool

    opts = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"rollout_scaling: --env-option wants KEY=VALUE, got {item!r}")
        opts[key] = yaml.safe_load(value)
    return opts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="toy")
    parser.add_argument(
        "--task", action="append", default=[], help="repeatable; default: the first task"
    )
    parser.add_argument("--env-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--preset", default="pi0-tiny")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-steps", type=int, default=None, help="denoising steps")
    parser.add_argument("--mode", choices=["sde", "ode"], default="sde")
    parser.add_argument(
        "--workers", default=None, help="comma list (default: 1,2,4,... up to the cores)"
    )
    parser.add_argument("--episodes-per-worker", type=int, default=4)
    parser.add_argument("--replan-every", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=None, help="default: the task's")
    parser.add_argument("--worker-timeout-s", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()

    import torch

    from ript_core.policy import PI0Policy
    from ript_core.rl.actor import PI0Actor

    if args.threads:
        torch.set_num_threads(args.threads)

    reg = get_registry()
    tasks = check_backend(reg, args.backend, args.task)
    env_options = parse_env_options(args.env_option)
    cores = usable_cores()
    counts = (
        [int(n) for n in args.workers.split(",")] if args.workers else default_worker_counts(cores)
    )

    state_dim = probe_state_dim(reg, args.backend, tasks[0], env_options)
    # ONE policy for every worker count: it is built before any pool exists
    policy = PI0Policy.from_preset(
        args.preset,
        prompts=[t.instruction for t in tasks],
        seed=0,
        dtype=DTYPES[args.dtype],
        device=args.device,
        num_steps=args.num_steps,
        state_dim=state_dim,
        logp_horizon=args.replan_every,
    )
    device = policy.device
    cuda = device.type == "cuda"
    actor = PI0Actor(policy, args.mode)
    params = sum(p.numel() for p in policy.parameters())
    weights_gb = torch.cuda.memory_allocated(device) / 1e9 if cuda else None
    dev_name = torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
    print(
        f"# Rollout scaling: backend `{args.backend}` ({', '.join(t.name for t in tasks)}), "
        f"preset `{args.preset}` ({params / 1e6:.1f}M params, {args.dtype}, {args.mode}, "
        f"{policy.num_steps} steps, chunk {policy.chunk_size}, replan every {args.replan_every}) "
        f"on {device} ({dev_name}), {cores} usable cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {args.episodes_per_worker} timed episodes per worker\n"
    )
    if cuda:
        print(f"Policy weights resident on the GPU after building: {weights_gb:.2f} GB\n")
        mem_col = "peak GPU alloc GB"
    else:
        mem_col = "main-process peak RSS MB"
    print(
        f"| workers | episodes | mean length | env steps/s | policy calls/s | mean batch "
        f"| policy ms/call | policy time % | env wait % | discarded | {mem_col} "
        f"| workers' RSS MB (sum) | pool start s |"
    )
    print("|" + "---|" * 13)

    rss = MainPeakRSS()
    next_id = 0
    for n in counts:
        t0 = time.perf_counter()
        pool = ProcessEnvPool(n, timeout_s=args.worker_timeout_s)
        pool.call_all("pid")  # every worker is up and answering
        start_s = time.perf_counter() - t0
        with pool:
            runner = RolloutRunner(
                actor,
                pool,
                replan_every=args.replan_every,
                max_steps=args.max_steps,
                env_options=env_options,
            )
            # warm-up: builds each worker's env and warms the policy at batch n
            runner.run(requests(args.backend, tasks, n, next_id))
            next_id += n
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            rss.reset()
            reqs = requests(args.backend, tasks, n * args.episodes_per_worker, next_id)
            next_id += len(reqs)
            rollouts, stats = runner.run(reqs)
            if cuda:
                torch.cuda.synchronize(device)
                mem = f"{torch.cuda.max_memory_allocated(device) / 1e9:.2f}"
            else:
                mem = f"{rss.peak_mb():.0f}"
            worker_kb = [_proc_status_kb(pool.pid(i), "VmRSS") or 0 for i in range(n)]
        print(row(n, stats, [r.length for r in rollouts], mem, sum(worker_kb) / 1024, start_s))
    if not cuda and not rss.resettable:
        print("\n(peak RSS could not be reset between runs: the column is the process's peak)")


def row(
    n: int, stats: RolloutStats, lengths: list[int], mem: str, workers_mb: float, start_s: float
) -> str:
    ms_per_call = 1000 * stats.policy_s / stats.policy_calls if stats.policy_calls else 0.0
    return (
        f"| {n} | {stats.episodes} | {sum(lengths) / max(1, len(lengths)):.1f} "
        f"| {stats.env_steps_per_s:.0f} | {stats.policy_calls_per_s:.1f} | {stats.mean_batch:.1f} "
        f"| {ms_per_call:.1f} | {100 * stats.policy_s / stats.wall_s:.0f} "
        f"| {100 * stats.env_wait_s / stats.wall_s:.0f} | {stats.discarded_episodes} "
        f"| {mem} | {workers_mb:.0f} | {start_s:.1f} |"
    )


if __name__ == "__main__":
    main()
