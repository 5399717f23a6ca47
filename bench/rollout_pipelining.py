"""Env steps/s and policy-device busy fraction of the pipelined rollout schedule.

Usage::

    python bench/rollout_pipelining.py                                  # pi0-tiny, fp32, 15 ms/step
    python bench/rollout_pipelining.py --preset pi0 --dtype bf16        # full size (needs a GPU)
    python bench/rollout_pipelining.py --step-ms 15 --replan-every 25 --groups 1,2,4
    python bench/rollout_pipelining.py --preset pi0 --dtype bf16 --compile \
        --scenario 128:15:50:800                                        # policy.compile

The env is the built-in ``toy`` backend wrapped so that every step costs
``--step-ms`` more, emulating a real simulator (LIBERO: ≈ 15 ms of physics
per step, docs/benchmarks.md; rendering on top of that is backend- and
machine-dependent). ``--step-cost sleep`` (default) sleeps, so the emulated
work takes no core; ``spin`` busy-waits, which does take one.

One ``ProcessEnvPool`` of ``--workers`` processes and ONE policy (``PI0Actor``,
SDE sampling as in training) serve every G of ``--groups``. For each G the
script runs one short warm-up (the policy at that batch size), then times
``episodes-per-worker × workers`` episodes with the same seeds for every G:
the rollouts must come out the same, only the schedule changes (the ``same
rollouts`` column counts episodes whose length and success equal G = 1's;
with a policy whose batched matmuls round differently per batch size — bf16
on a GPU — trajectories may part after a near-tie).

Columns: env steps/s and its ratio to G = 1; the fraction of the wall time
the policy was busy (on CUDA the device time between each call's CUDA
events; elsewhere the ``act`` calls, which return host arrays) and the
host spent inside the policy's calls (with the actor's asynchronous
``submit`` it overlaps the device; ``--compare-sync`` runs G without it);
the fraction the env workers were busy (timed inside the workers); the
planner's prediction for the same G (``pipeline_option``), from the policy
cost fitted on all timed calls, the env chunk time the workers measured, and
``ceil(max_steps / replan_every)`` decisions per episode for the ramp.

The wrapper backend (``slowtoy``) is registered through a temporary
distribution on ``PYTHONPATH`` so that spawned workers discover it like any
plugin; it is this file, imported by name.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

# light imports only: spawned workers re-import this file (as __mp_main__ and,
# through the entry point, as ``rollout_pipelining``); torch stays in main()
from ript_core.envs.catalogue import TaskInfo
from ript_core.envs.toy.plugin import ToySpec
from ript_core.hookspecs import hookimpl
from ript_core.plan import round_batch_sizes
from ript_core.plugins import ENTRY_POINT_GROUP, get_registry
from ript_core.policy.buckets import batch_bucket

BACKEND = "slowtoy"
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


# ---- the slowed toy backend (runs inside the env workers) ---------------------------


def _slowed(env: Any, seconds: float, spin: bool) -> Any:
    import gymnasium as gym

    class Slowed(gym.Wrapper):
        def step(self, action: Any) -> Any:
            if spin:
                end = time.perf_counter() + seconds
                while time.perf_counter() < end:
                    pass
            elif seconds:
                time.sleep(seconds)
            return self.env.step(action)

    return Slowed(env)


class SlowToySpec(ToySpec):
    """The toy backend, each step made ``step_cost_ms`` slower (slept or spun)."""

    name = BACKEND
    env_options = {**ToySpec.env_options, "step_cost_ms": 0.0, "step_cost_spin": False}

    def make_env(self, task: str, options: dict[str, Any]) -> Any:
        opts = dict(options)
        seconds = float(opts.pop("step_cost_ms")) / 1000
        spin = bool(opts.pop("step_cost_spin"))
        return _slowed(super().make_env(task, opts), seconds, spin)


@hookimpl
def ript_backends() -> list[ToySpec]:
    return [SlowToySpec()]


def install_plugin() -> None:
    """Make ``slowtoy`` discoverable here and in every worker spawned later."""
    site = Path(tempfile.mkdtemp(prefix="ript-bench-site-"))
    info = site / "ript_bench_slowtoy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ript-bench-slowtoy\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{BACKEND} = rollout_pipelining\n"
    )
    paths = [str(site), str(Path(__file__).resolve().parent)]
    sys.path[:0] = paths
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])
    get_registry(reload=True)


# ---- the benchmark -------------------------------------------------------------------


@attrs.frozen
class Scenario:
    workers: int
    step_ms: float
    replan_every: int
    max_steps: int

    @classmethod
    def parse(cls, text: str) -> Scenario:
        try:
            w, ms, k, m = text.split(":")
            return cls(int(w), float(ms), int(k), int(m))
        except ValueError:
            sys.exit(
                f"rollout_pipelining: --scenario wants WORKERS:STEP_MS:REPLAN:MAX_STEPS, got {text!r}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="pi0-tiny")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-steps", type=int, default=None, help="denoising steps")
    parser.add_argument("--workers", type=int, default=None, help="default: usable cores")
    parser.add_argument("--groups", default="1,2,4", help="comma list of G")
    parser.add_argument("--step-ms", type=float, default=15.0, help="extra cost per env step")
    parser.add_argument("--step-cost", choices=["sleep", "spin"], default="sleep")
    parser.add_argument("--replan-every", type=int, default=5)
    parser.add_argument("--max-steps", type=int, default=30, help="episode step budget")
    parser.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="WORKERS:STEP_MS:REPLAN:MAX_STEPS",
        help="repeatable; replaces the four flags above; the policy is built once for all",
    )
    parser.add_argument("--episodes-per-worker", type=int, default=2)
    parser.add_argument("--task", default="reach-red")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads; default: the trainer's (1 with the policy on a GPU, "
        "ript_core/rl/host_threads.py)",
    )
    parser.add_argument(
        "--threads-ab",
        default="",
        metavar="A,B",
        help="same-process A/B of torch CPU threads: the first G runs once with A, every "
        "other G four times (A, B, A, B); rows marked tA / tB",
    )
    parser.add_argument("--worker-timeout-s", type=float, default=300.0)
    parser.add_argument(
        "--compile",
        action="store_true",
        help="policy.compile (regional torch.compile in the fast sampler); every batch "
        "bucket up to the largest scenario is compiled before any timing",
    )
    parser.add_argument(
        "--compare-sync",
        default="",
        metavar="G[,G...]",
        help="also run these G with the actor's synchronous act only (no submit): the "
        "schedule before host and device work overlapped; rows marked 'sync'",
    )
    parser.add_argument(
        "--stub-policy-ms",
        type=float,
        default=None,
        metavar="MS_PER_SAMPLE",
        help="replace PI0 by a stub that sleeps this long per sample: the schedule alone, "
        "with an inference cost proportional to the batch",
    )
    parser.add_argument(
        "--profile-host",
        type=int,
        default=None,
        metavar="BATCH",
        help="only profile the host side of submit + result at this batch (cProfile) and exit",
    )
    args = parser.parse_args()

    install_plugin()
    import torch

    from ript_core.policy import PI0Policy
    from ript_core.rl.actor import PI0Actor
    from ript_core.rl.host_threads import apply_rollout_threads

    if args.threads:
        torch.set_num_threads(args.threads)
    # a layer past dynamo's recompile limit would run eagerly with only a log
    # warning: a compiled row must not silently include eager layers
    torch._dynamo.config.fail_on_recompile_limit_hit = True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    scenarios = [Scenario.parse(t) for t in args.scenario] or [
        Scenario(args.workers or cores or 1, args.step_ms, args.replan_every, args.max_steps)
    ]
    task = get_registry().task_info(BACKEND, args.task)
    groups = [int(g) for g in args.groups.split(",")]
    if args.stub_policy_ms is not None:
        print(
            f"# Rollout pipelining: toy `{args.task}` + per-step cost ({args.step_cost}); "
            f"STUB policy sleeping {args.stub_policy_ms:g} ms per sample (no model), "
            f"{cores} usable cores, {args.episodes_per_worker} timed episodes per worker\n",
            flush=True,
        )
        stub = StubActor(args.stub_policy_ms / 1000)
        for sc in scenarios:
            run_scenario(sc, groups, stub, args, torch.device("cpu"))
        return
    t0 = time.perf_counter()
    policy = PI0Policy.from_preset(
        args.preset,
        prompts=[task.instruction],
        seed=0,
        dtype=DTYPES[args.dtype],
        device=args.device,
        num_steps=args.num_steps,
        state_dim=3,
        logp_horizon=min(sc.replan_every for sc in scenarios),
        compile=args.compile,
    )
    actor = PI0Actor(policy, "sde")
    apply_rollout_threads(args.threads, policy.device)  # what the trainer does
    device = policy.device
    build_s = time.perf_counter() - t0  # before the compile warm-up, reported apart
    # what each runner will announce (planner.round_batch_sizes), all at once:
    # the warm-up then compiles every graph the timed runs can reach
    actor.expect_batch_sizes(
        sorted({s for sc in scenarios for g in groups for s in round_batch_sizes(sc.workers, g)})
    )
    compile_s = (
        warm_buckets(actor, task, max(sc.workers for sc in scenarios)) if args.compile else 0
    )
    dev_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu"
    )
    params = sum(p.numel() for p in policy.parameters())
    print(
        f"# Rollout pipelining: toy `{args.task}` + per-step cost ({args.step_cost}); preset "
        f"`{args.preset}` ({params / 1e6:.1f}M params, {args.dtype}, sde, {policy.num_steps} "
        f"steps, chunk {policy.chunk_size}, built in {build_s:.0f} s) on "
        f"{device} ({dev_name}), {cores} usable cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {args.episodes_per_worker} timed episodes per worker"
        + (
            f"; policy.compile on, every batch bucket compiled first ({compile_s:.0f} s)"
            if args.compile
            else ""
        )
        + "\n",
        flush=True,
    )
    if args.profile_host:
        print(host_profile(actor, task, args.profile_host))
        return
    if device.type == "cuda":
        print(f"Host syncs in one `submit` after warm-up: {submit_syncs(actor, task)}\n")
    for sc in scenarios:
        run_scenario(sc, groups, actor, args, device)


def one_input(task: TaskInfo) -> Any:
    """One policy input of ``task``: a reset of its env through its adapter."""
    registry = get_registry()
    env = registry.make_env(BACKEND, task.name, {})
    adapt, _ = registry.default_adapters(BACKEND, task.name, {})
    return adapt(env.reset(seed=0)[0])


def submit_syncs(actor: Any, task: TaskInfo) -> str:
    """Run one warm ``submit`` under torch's sync debug mode "error": ``none``
    if nothing in it waited for the GPU (the runner's overlap needs that),
    else the error."""
    import torch

    one = one_input(task)
    size = min(announced_sizes(actor) or (1,))
    actor.act([one] * size, list(range(size)))  # this size's graph exists
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        pending = actor.submit([one] * size, list(range(size)))
    except RuntimeError as exc:
        return f"`{str(exc).splitlines()[0]}`"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    pending.result()
    return f"none (batch {size})"


def host_profile(actor: Any, task: TaskInfo, size: int, calls: int = 30) -> str:
    """Where the host's time in ``submit`` and ``result`` goes at one batch
    size (cProfile, after a warm call; the device finishes each call before
    the next, so ``result`` does not wait)."""
    import cProfile
    import io
    import pstats

    import torch

    one = one_input(task)
    inputs, seeds = [one] * size, list(range(size))
    actor.act(inputs, seeds)
    cuda = actor.policy.device.type == "cuda"
    prof = cProfile.Profile()
    submit_s, result_s = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        prof.enable()
        pending = actor.submit(inputs, seeds)
        prof.disable()
        t1 = time.perf_counter()
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        prof.enable()
        pending.result()
        prof.disable()
        submit_s.append(t1 - t0)
        result_s.append(time.perf_counter() - t2)
    out = io.StringIO()
    out.write(
        f"Host time per call at batch {size}: submit {1e3 * statistics.median(submit_s):.2f} ms, "
        f"result {1e3 * statistics.median(result_s):.2f} ms (medians of {calls}, "
        f"under cProfile)\n\n"
    )
    # without the profiler: submit's parts, each after a sync (an idle GPU)
    policy = actor.policy
    parts: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        r = fn()
        parts.setdefault(name, []).append(time.perf_counter() - t)
        return r

    fast = policy.fast_sampler()
    for _ in range(calls):
        timed("submit + result (device included)", lambda: actor.submit(inputs, seeds).result())
        batch = timed("preprocess", lambda: policy.preprocess(inputs))
        gens = timed("generators", lambda: actor.generators(seeds))
        timed(
            "sample (host, no sync)", lambda b=batch, g=gens: policy.sample(b, "sde", generator=g)
        )
        if fast is not None and fast._graphs:
            graph = next(iter(fast._graphs.values())).graph
            if graph is not None:
                timed("graph.replay (host)", graph.replay)
    for name, ts in parts.items():
        out.write(f"- {name}: {1e3 * statistics.median(ts):.2f} ms\n")
    out.write("\n```\n")
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(20)
    out.write("```\n")
    return out.getvalue()


class SyncActor:
    """The actor without ``submit``: the runner calls ``act`` and waits."""

    def __init__(self, actor: Any) -> None:
        self.inner = actor
        self.policy = getattr(actor, "policy", None)

    def expect_batch_sizes(self, sizes: Any) -> None:
        if hasattr(self.inner, "expect_batch_sizes"):
            self.inner.expect_batch_sizes(sizes)

    def act(self, inputs: Any, seeds: Any) -> Any:
        return self.inner.act(inputs, seeds)


def announced_sizes(actor: Any) -> tuple[int, ...]:
    """The batch sizes announced to the actor's fast sampler (none for a stub
    or off CUDA)."""
    fast = actor.policy.fast_sampler() if hasattr(actor, "policy") else None
    return tuple(sorted(fast.batch_sizes)) if fast is not None else ()


def warm_buckets(actor: Any, task: TaskInfo, largest: int) -> float:
    """Run the actor once at every batch bucket the runner can reach (the fast
    sampler pads a batch to the next power of two or the next announced size)
    so that no compilation lands inside a timed rollout; returns the seconds
    it took."""
    one = one_input(task)
    t0 = time.perf_counter()
    sizes = announced_sizes(actor)
    for size in sorted({min(batch_bucket(n, sizes), largest) for n in range(1, largest + 1)}):
        actor.act([one] * size, list(range(size)))
    return time.perf_counter() - t0


class StubActor:
    """Sleeps ``per_sample_s × batch`` and returns zero chunks: an inference
    cost proportional to the batch, to see the schedule without a model."""

    def __init__(self, per_sample_s: float) -> None:
        self.per_sample_s = per_sample_s

    def act(self, inputs: Any, seeds: Any) -> Any:
        import numpy as np

        from ript_core.rollout.runner import PolicyOutput

        time.sleep(self.per_sample_s * len(inputs))
        return PolicyOutput(np.zeros((len(inputs), 50, 3), np.float32), [{}] * len(inputs))


def run_scenario(
    sc: Scenario, groups: list[int], actor: Any, args: argparse.Namespace, device: Any
) -> None:
    import torch

    from ript_core.plan import InferenceCost, choose_pipeline, pipeline_option
    from ript_core.rollout.runner import EpisodeRequest, RolloutRunner
    from ript_core.rollout.workers import ProcessEnvPool

    n = sc.workers
    env_options = {
        "step_cost_ms": sc.step_ms,
        "step_cost_spin": args.step_cost == "spin",
        "max_steps": sc.max_steps,  # the toy truncates at its own budget otherwise
    }

    def requests(count: int, first: int) -> list[Any]:
        return [
            EpisodeRequest(first + k, BACKEND, args.task, (7 * (first + k)) % 50, seed=first + k)
            for k in range(count)
        ]

    timed = requests(n * args.episodes_per_worker, 10_000)
    # (label, G, sync) -> (rollouts, stats), in run order
    results: dict[tuple[str, int, bool], Any] = {}
    sync_groups = [int(g) for g in args.compare_sync.split(",") if g]
    ab = [int(t) for t in args.threads_ab.split(",") if t]
    variants: list[tuple[int, bool, int | None]] = []
    for i, g in enumerate(groups):
        if ab and i > 0:  # A, B, A, B: a drift over the call hits both alike
            variants += [(g, False, t) for _ in range(2) for t in ab]
        else:
            variants.append((g, False, ab[0] if ab else None))
    variants += [(g, True, None) for g in sync_groups]
    with ProcessEnvPool(n, timeout_s=args.worker_timeout_s) as pool:
        pool.call_all("pid")
        for g, sync, threads in variants:
            if g > n:
                continue  # the runner would cap it at n: the same run again
            if threads is not None:
                torch.set_num_threads(threads)
            label = f"{g}{' sync' if sync else ''}" + (f" t{threads}" if ab else "")
            while (label, g, sync) in results:
                label += "'"
            policy = SyncActor(actor) if sync else actor
            kw = dict(env_options=env_options, pipeline_groups=g, replan_every=sc.replan_every)
            # warm-up: builds the workers' envs, runs the policy at this G's batch
            RolloutRunner(policy, pool, max_steps=sc.replan_every, **kw).run(requests(n, 1000 * g))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            rollouts, stats = RolloutRunner(policy, pool, max_steps=sc.max_steps, **kw).run(timed)
            results[(label, g, sync)] = (rollouts, stats)
            print(
                f"G={label}: {stats.env_steps} env steps in "
                f"{stats.wall_s:.2f} s ({stats.env_steps_per_s:.1f}/s)",
                file=sys.stderr,
                flush=True,
            )

    first = min(results, key=lambda k: (k[1], k[2]))  # the smallest G, in its first run
    base_rollouts, base = results[first]
    # the cost line needs several batch sizes: fit it on the calls of every G
    calls = [c for _, s in results.values() for c in s.policy_call_times]
    # the CUDA fast sampler pads each batch to its bucket (a power of two or
    # an announced size)
    cost = InferenceCost.fit(calls, bucketed=device.type == "cuda", sizes=announced_sizes(actor))
    chunk_s = base.env_busy_s / max(1, base.policy_samples)
    print(
        f"## {n} env workers, {sc.step_ms:g} ms per step, replan every {sc.replan_every}, "
        f"at most {sc.max_steps} steps per episode\n\n"
        f"Measured: policy call ≈ {cost.call_s * 1e3:.1f} ms + "
        f"{cost.per_sample_s * 1e3:.2f} ms × batch (least squares on the medians per batch "
        f"size of the {len(calls)} timed calls of all G); env chunk ≈ {chunk_s * 1e3:.1f} ms "
        f"({sc.replan_every} steps, timed in the workers at G={first[0]})\n"
    )
    print(
        "| G | envs/group | episodes | env steps | wall s | env steps/s | × G=1 | policy calls "
        "| mean batch | policy ms/call | policy busy % | policy host % | env busy % "
        "| env wait % | same rollouts | predicted × G=1 | predicted policy busy % "
        "| predicted env busy % |"
    )
    print("|" + "---|" * 18)
    ref = [(r.length, r.success) for r in base_rollouts]
    # decisions per episode, for the ramp: episodes that end early make fewer
    decisions = -(-sc.max_steps // sc.replan_every)
    kw = dict(replan_every=sc.replan_every, decisions=decisions)
    lock = pipeline_option(n, 1, chunk_s, cost, **kw)
    for (label, g, _), (rollouts, s) in results.items():
        pred = pipeline_option(n, g, chunk_s, cost, **kw)
        same = sum((r.length, r.success) == x for r, x in zip(rollouts, ref, strict=True))
        sizes = "/".join(str(k) for k in sorted(set(pred.group_sizes), reverse=True))
        print(
            f"| {label} | {sizes} | {s.episodes} | {s.env_steps} "
            f"| {s.wall_s:.2f} "
            f"| {s.env_steps_per_s:.1f} | {s.env_steps_per_s / base.env_steps_per_s:.2f} "
            f"| {s.policy_calls} | {s.mean_batch:.1f} "
            f"| {1000 * s.policy_s / max(1, s.policy_calls):.1f} "
            f"| {100 * s.policy_busy_frac:.0f} | {100 * s.policy_host_s / s.wall_s:.0f} "
            f"| {100 * s.env_busy_frac:.0f} "
            f"| {100 * s.env_wait_s / s.wall_s:.0f} | {same}/{len(ref)} "
            f"| {lock.cost_s / pred.cost_s:.2f} | {100 * pred.policy_util:.0f} "
            f"| {100 * pred.env_util:.0f} |"
        )
    # an env's turn: its chunk, the group's slowest env, the absorb, the policy call
    print(
        "\nWhere an env's turn goes (means; a turn = reply -> next chunk sent -> next reply):\n\n"
        "| G | env chunk ms | + group straggler ms | + absorb ms | + policy latency ms "
        "| (of it device ms) | = turn ms | measured ms per round |"
    )
    print("|" + "---|" * 8)
    for (label, g, _), (_, s) in results.items():
        calls_ = max(1, s.policy_calls)
        turns = max(1, s.group_turns)
        env_ms = 1e3 * s.env_busy_s / max(1, s.policy_samples)
        straggle, absorb = 1e3 * s.env_straggle_s / turns, 1e3 * s.absorb_s / turns
        latency, dev = 1e3 * s.policy_latency_s / calls_, 1e3 * s.policy_s / calls_
        rounds = s.policy_calls / g
        print(
            f"| {label} | {env_ms:.1f} | {straggle:.1f} | {absorb:.1f} "
            f"| {latency:.1f} | {dev:.1f} | {env_ms + straggle + absorb + latency:.1f} "
            f"| {1e3 * s.wall_s / max(1.0, rounds):.1f} |"
        )
    pick = choose_pipeline(n, chunk_s, cost, **kw)
    print(
        f"\nThe planner, given these measured costs, picks G = {pick.groups} "
        f"(predicted {pick.speedup:.2f}× lock-step).\n",
        flush=True,
    )


if __name__ == "__main__":
    main()
