"""Where the time of one fast-sampler chunk goes (issue 13): prefix vs denoising
steps, and which kernels.

Usage::

    python bench/gpu_profile.py --out bench/results/gpu_profile.json     # GPU, full pi0, bf16
    python bench/gpu_profile.py --preset pi0-tiny --device cpu          # code path only

Two measurements, both on the CUDA-graph path that rollouts use:

1. Graph-replay time of an ODE chunk with 1 and with N denoising steps per
   batch size: ``step = (T_N - T_1) / (N - 1)`` and ``prefix = T_1 - step``
   (SigLIP + Gemma into the static cache, plus the input copies).
2. ``torch.profiler`` over the same chunk function run eagerly (no graph: the
   profiler cannot see inside a replay): number of kernels and GPU time per
   kernel name. Under a graph the launch gaps vanish but each kernel still
   runs; their sum is what a replay cannot go below. Kernels are also summed
   by kind (``by_kind``: matmul, attention, fused/elementwise, copy, other).

``--compile`` runs both through the regionally compiled layers
(``FastSampler(compile_layers=True)``, what ``policy.compile`` does);
``--kernel-batches`` picks the batch sizes that get kernel tables: the
chunk's and a one-step chunk's (the prefix and one step), each with the ops
behind its device copies (``copy_launchers``) and its GEMMs
(``gemm_launchers``: op, input shapes, callers, count, ms). ``--timeline``
replaces the kernel tables by the split of a graph-path call's wall time:
``sample``'s host work (and the parameter fingerprint in it) against the
replay alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from typing import Any

import torch

from ript_core.bench.harness import timings
from ript_core.bench.pi0 import make_inputs
from ript_core.policy import PI0Policy
from ript_core.policy.fast.sampler import FastSampler


def replay_ms(policy: PI0Policy, fast: FastSampler, batch: Any, steps: int, iters: int) -> float:
    noise = torch.randn(len(batch), policy.chunk_size, policy.max_action_dim)
    level = policy.config.noise_level

    def call() -> None:
        fast.sample(batch, "ode", None, noise.to(policy.device), level, steps)

    return statistics.median(timings(call, policy.device, iters, warmup=3))


KINDS = (
    ("attention", ("fmha", "attention", "flash", "attn")),
    # CUDA kernel names (cuBLAS/cuBLASLt/CUTLASS), or the aten ops of a CPU table
    (
        "matmul",
        ("gemm", "xmma", "cutlass", "nvjet", "sm90", "sm80", "cublas", "::mm", "addmm", "bmm"),
    ),
    ("fused/elementwise", ("triton", "elementwise", "reduce", "norm", "softmax")),
    ("copy", ("copy", "memcpy", "memset", "cat")),
)


def kernel_kind(name: str) -> str:
    low = name.lower()
    for kind, marks in KINDS:
        if any(m in low for m in marks):
            return kind
    return "other"


def kernel_table(
    policy: PI0Policy,
    batch: Any,
    steps: int,
    compile_layers: bool = False,
    fuse_projections: bool | None = None,
    key_splits: int | None = None,
) -> dict[str, Any]:
    """Kernels of one eager static-cache chunk: count, total GPU ms, top names."""
    from torch.profiler import ProfilerActivity, profile

    # no graphs (the profiler cannot see into a replay); fusion as the graphs run it
    fuse = policy.device.type == "cuda" if fuse_projections is None else fuse_projections
    eager = FastSampler(
        policy,
        use_graphs=False,
        compile_layers=compile_layers,
        fuse_projections=fuse,
        key_splits=key_splits,
    )
    noise = torch.randn(len(batch), policy.chunk_size, policy.max_action_dim).to(policy.device)
    level = policy.config.noise_level
    for _ in range(2):
        eager.sample(batch, "ode", None, noise, level, steps)
    cuda = policy.device.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts, record_shapes=True) as prof:
        eager.sample(batch, "ode", None, noise, level, steps)
        if cuda:
            torch.cuda.synchronize()
    per_name: dict[str, list[float]] = defaultdict(list)
    for e in prof.events():
        if e.name.startswith("## "):
            continue  # inductor's "## Call CompiledFxGraph" ranges: annotations, not kernels
        if cuda and e.device_type.name == "CUDA":
            per_name[e.name].append(e.device_time / 1e3)  # us -> ms
        elif not cuda and e.device_type.name == "CPU" and e.name.startswith("aten::"):
            per_name[e.name].append(e.cpu_time / 1e3)
    rows = sorted(
        ({"kernel": k[:120], "count": len(v), "ms": sum(v)} for k, v in per_name.items()),
        key=lambda r: -r["ms"],
    )
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: {"count": 0, "ms": 0.0})
    for r in rows:
        kind = by_kind[kernel_kind(r["kernel"])]
        kind["count"] += r["count"]
        kind["ms"] += r["ms"]
    return {
        "kernels": sum(r["count"] for r in rows),
        "kernel_ms": sum(r["ms"] for r in rows),
        "by_kind": dict(by_kind),
        "top": rows[:25],
        "copy_launchers": copy_launchers(prof) if cuda else [],
        "gemm_launchers": kernel_launchers(prof, is_matmul_kernel, top=24) if cuda else [],
    }


def is_copy_kernel(name: str) -> bool:
    """A device copy (``direct_copy_kernel``, ``index_copy_kernel``, a memcpy),
    not a fused kernel whose name merely mentions ``_to_copy``."""
    low = name.lower()
    return "copy_kernel" in low or "memcpy" in low


def is_matmul_kernel(name: str) -> bool:
    return kernel_kind(name) == "matmul"


def copy_launchers(prof: Any, top: int = 12) -> list[dict[str, Any]]:
    """The CPU ops whose kernels are device copies, grouped by op, input
    shapes and the chain of ops above them: which code pays for the
    ``direct_copy`` kernels of the table."""
    return kernel_launchers(prof, is_copy_kernel, top)


def kernel_launchers(prof: Any, keep: Any = is_copy_kernel, top: int = 12) -> list[dict[str, Any]]:
    """The CPU ops whose kernels ``keep`` selects, grouped by op, input
    shapes and the chain of ops above them (GEMMs: which projection is which
    shape and what it costs)."""
    groups: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for e in prof.events():
        kernels = [k for k in getattr(e, "kernels", []) if keep(k.name)]
        if e.device_type.name != "CPU" or not kernels:
            continue
        chain, parent = [], e.cpu_parent
        while parent is not None and len(chain) < 5:
            chain.append(parent.name)
            parent = parent.cpu_parent
        key = (e.name, str(getattr(e, "input_shapes", "")), " < ".join(chain))
        groups[key].append(sum(k.duration for k in kernels) / 1e3)  # us -> ms
    rows = sorted(
        (
            {
                "op": op,
                "shapes": shapes[:200],
                "callers": chain[:300],
                "count": len(v),
                "ms": sum(v),
            }
            for (op, shapes, chain), v in groups.items()
        ),
        key=lambda r: -r["ms"],
    )
    return rows[:top]


def replay_timeline(
    policy: PI0Policy, fast: FastSampler, batch: Any, steps: int, iters: int = 20
) -> dict[str, Any]:
    """Where one graph-path call's wall time goes: ``sample``'s host work
    before and around the replay (inputs, the parameter fingerprint, the
    copies; timed without a sync, the replay being asynchronous) against the
    replay alone."""
    noise = torch.randn(len(batch), policy.chunk_size, policy.max_action_dim).to(policy.device)
    level = policy.config.noise_level

    def call() -> None:
        fast.sample(batch, "ode", None, noise, level, steps)

    for _ in range(3):
        call()
    out: dict[str, Any] = {}
    # host: sample()'s return without a sync (the replay is asynchronous) and
    # the fingerprint alone
    host, wall, fps = [], [], []
    for _ in range(iters):
        torch.cuda.synchronize()
        t = time.perf_counter()
        call()
        host.append((time.perf_counter() - t) * 1e3)
        torch.cuda.synchronize()
        wall.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        fast._params_fingerprint()
        fps.append((time.perf_counter() - t) * 1e3)
    out["sample_wall_ms"] = statistics.median(wall)
    out["sample_host_ms"] = statistics.median(host)
    out["fingerprint_ms"] = statistics.median(fps)
    out["parameters"] = sum(1 for _ in policy.model.parameters())
    # the replay alone
    entry = next(g for g in fast._graphs.values() if g.plan["steps"] == steps)
    reps = []
    for _ in range(iters):
        torch.cuda.synchronize()
        t = time.perf_counter()
        entry.graph.replay()
        torch.cuda.synchronize()
        reps.append((time.perf_counter() - t) * 1e3)
    out["replay_only_ms"] = statistics.median(reps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="pi0")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-sizes", default="1,16,64")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--kernel-batches", default="1", help="batch sizes with a kernel table")
    ap.add_argument("--compile", action="store_true", help="through the compiled layers")
    ap.add_argument(
        "--fuse-projections", choices=("on", "off"), default="on", help="fused_projections.py"
    )
    ap.add_argument(
        "--key-splits",
        default="auto",
        help="key chunks of the expert's attention (varlen_attention.split_keys): auto or N",
    )
    ap.add_argument(
        "--timeline",
        action="store_true",
        help="instead of kernel tables: sample's host time against the replay alone",
    )
    ap.add_argument("--out", default=None)
    ns = ap.parse_args()
    if ns.compile:
        # a layer past dynamo's recompile limit would silently run eagerly
        torch._dynamo.config.fail_on_recompile_limit_hit = True
    policy = PI0Policy.from_preset(
        ns.preset, seed=0, dtype=ns.dtype, device=ns.device, logp_horizon=5
    )
    steps = policy.num_steps
    cfgs = policy.model.config
    meta = {
        "preset": ns.preset,
        "dtype": ns.dtype,
        "device": torch.cuda.get_device_name() if policy.device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "steps": steps,
        "compiled_layers": ns.compile,
        "attn": {
            "vision": cfgs.vlm_config.vision_config._attn_implementation,
            "text": cfgs.vlm_config.text_config._attn_implementation,
            "expert": cfgs.dit_config._attn_implementation,
        },
    }
    print(json.dumps(meta), flush=True)
    fuse = None if ns.fuse_projections == "on" else False
    meta["fuse_projections"] = ns.fuse_projections
    splits = None if ns.key_splits == "auto" else int(ns.key_splits)
    meta["key_splits"] = ns.key_splits
    fast = FastSampler(policy, compile_layers=ns.compile, fuse_projections=fuse, key_splits=splits)
    kernel_batches = {int(b) for b in ns.kernel_batches.split(",") if b}
    rows = []
    for bsz in (int(b) for b in ns.batch_sizes.split(",")):
        batch = policy.preprocess(make_inputs(policy, bsz, cameras=2))
        t1 = replay_ms(policy, fast, batch, 1, ns.iters)
        tn = replay_ms(policy, fast, batch, steps, ns.iters)
        step = (tn - t1) / (steps - 1)
        plans = [g.plan for g in fast._graphs.values()]
        row = {
            "key_splits_used": sorted({p.get("key_splits", 1) for p in plans}),
            "batch": bsz,
            "chunk_ms": tn,
            "one_step_chunk_ms": t1,
            "prefix_ms": t1 - step,
            "step_ms": step,
            "graphs": fast.use_graphs and fast.capture_error is None,
        }
        if bsz in kernel_batches and ns.timeline and policy.device.type == "cuda":
            row["timeline"] = replay_timeline(policy, fast, batch, steps)
            row["timeline_one_step"] = replay_timeline(policy, fast, batch, 1)
            print(json.dumps({"batch": bsz, "timeline": row["timeline"]}), flush=True)
            print(json.dumps({"batch": bsz, "one_step": row["timeline_one_step"]}), flush=True)
        if bsz in kernel_batches and not ns.timeline:
            row["eager_kernels"] = kernel_table(policy, batch, steps, ns.compile, fuse, splits)
            # the prefix's own kernels: a chunk of one step (its step is 1/N of the above)
            row["eager_kernels_one_step"] = kernel_table(policy, batch, 1, ns.compile, fuse, splits)
        rows.append(row)
        print(json.dumps(row), flush=True)
        fast.clear()
    if ns.out:
        with open(ns.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
