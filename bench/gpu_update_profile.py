"""Where the RIPT update's time goes: kernels by kind, and attention backends.

Usage (GPU, full size; docs/benchmarks.md reports it)::

    python bench/gpu_update_profile.py --preset pi0 --dtype bf16 --out bench/results

CPU smoke test (tests/bench/test_gpu_benches.py runs this code path)::

    python bench/gpu_update_profile.py --preset pi0-tiny --dtype fp32 --runs 2:off,2:on --iters 1

For each ``micro:checkpointing`` run, the update step of ``bench/gpu_policy.py``
(``log_prob`` of a 10-step SDE chain + PPO clipped loss + backward, all of the
model training) is

1. timed with the policy's SDPA kernels (ript_core/policy/attention.py:
   cuDNN attention allowed for gradient passes of 8 or more samples) and with
   cuDNN attention off (``--attention policy,no-cudnn``), and
2. profiled once (``torch.profiler``): device time per kernel kind
   (matmul, attention, normalisation, elementwise/copy, other), the kernel
   count, and the busy fraction ``sum of kernel time / wall time`` -- well
   below 1 means the host (Python, launches) is the limit, not the GPU.

Writes ``gpu_update_profile.json`` under ``--out``.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn.attention import SDPBackend

import ript_core.policy.attention as attention
from ript_core import plan as pl
from ript_core.bench.harness import DTYPES, H100_BF16_PEAK, model_parser, run_meta, sync, timings
from ript_core.bench.pi0 import footprint, update_step
from ript_core.policy import PI0Policy
from ript_core.policy.activation_checkpointing import set_activation_checkpointing
from ript_core.policy.fast.sampler import FastSampler

#: Kernel kinds, first match wins (CUDA kernel names; CPU op names on CPU).
KINDS = [
    ("attention", re.compile(r"fmha|flash|attention|cudnn|sdpa|softmax", re.I)),
    ("matmul", re.compile(r"gemm|nvjet|cutlass|xmma|matmul|\bmm\b|addmm|bmm|linear", re.I)),
    ("norm", re.compile(r"rms|norm", re.I)),
    (
        "elementwise/copy",
        re.compile(r"elementwise|vectorized|unrolled|reduce|copy|cat|index|fill|mul|add", re.I),
    ),
]

#: What the policy's gradient passes may use, per variant.
ATTENTION_SETS = {
    "policy": attention.TRAINING_CUDA_BACKENDS,
    "no-cudnn": [b for b in attention.TRAINING_CUDA_BACKENDS if b != SDPBackend.CUDNN_ATTENTION],
}


def kind_of(name: str) -> str:
    return next((kind for kind, pattern in KINDS if pattern.search(name)), "other")


def profile_step(step: Any, device: torch.device) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    step()  # warm
    sync(device)
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        step()
        sync(device)
    wall_ms = (time.perf_counter() - t0) * 1e3
    by_kind: dict[str, float] = {}
    count = 0
    top: list[tuple[float, str]] = []
    for evt in prof.key_averages():
        if device.type == "cuda":
            us = evt.self_device_time_total
            if us <= 0 or evt.device_type != torch.autograd.DeviceType.CUDA:
                continue
        else:
            us = evt.self_cpu_time_total
            if not evt.key.startswith("aten::"):
                continue
        kind = kind_of(evt.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + us / 1e3
        count += evt.count
        top.append((us / 1e3, evt.key[:90]))
    busy = sum(by_kind.values())
    top.sort(reverse=True)
    return {
        "wall_ms_profiled": wall_ms,
        "kernel_ms": busy,
        "busy_fraction": busy / wall_ms if wall_ms else None,
        "kernels": count,
        "ms_by_kind": {k: round(v, 3) for k, v in sorted(by_kind.items())},
        "top": [{"ms": round(ms, 3), "name": name} for ms, name in top[:15]],
    }


def run(
    policy: PI0Policy,
    fast: FastSampler,
    micro: int,
    ckpt: bool,
    cameras: int,
    iters: int,
    fp: pl.PolicyFootprint,
    peak: float,
    attention_sets: list[str],
) -> list[dict[str, Any]]:
    device = policy.device
    step, _, _ = update_step(policy, fast, micro, cameras)
    set_activation_checkpointing(policy.model, ckpt)
    flops = 3.0 * pl.sample_flops(fp) * micro
    rows = []
    try:
        for name in attention_sets:
            attention.TRAINING_CUDA_BACKENDS = ATTENTION_SETS[name]
            row: dict[str, Any] = {"micro_batch": micro, "checkpointing": ckpt, "attention": name}
            try:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                med = statistics.median(timings(step, device, iters, 1))
                row.update(median_ms=med, samples_per_s=micro * 1e3 / med)
                row["mfu"] = flops / (med / 1e3) / peak
                if device.type == "cuda":
                    row["peak_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
                row["profile"] = profile_step(step, device)
            except Exception as exc:  # one variant failing (OOM, kernel) keeps the others
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            policy.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
            rows.append(row)
            print("update", json.dumps({k: v for k, v in row.items() if k != "profile"}))
            if "profile" in row:
                print(
                    "  profile",
                    json.dumps({k: row["profile"][k] for k in row["profile"] if k != "top"}),
                )
    finally:
        attention.TRAINING_CUDA_BACKENDS = ATTENTION_SETS["policy"]
        set_activation_checkpointing(policy.model, False)
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = model_parser(__doc__)
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--runs", default="16:off,32:on", help="comma list of micro:checkpointing")
    parser.add_argument(
        "--attention", default="policy,no-cudnn", help="comma list of policy,no-cudnn"
    )
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    policy = PI0Policy.from_preset(
        args.preset, seed=0, dtype=DTYPES[args.dtype], device=args.device, logp_horizon=5
    )
    device = policy.device
    cameras = min(args.cameras, len(policy.arch.cameras))
    fp = footprint(policy, cameras)
    peak = H100_BF16_PEAK if device.type == "cuda" else 1e12
    fast = FastSampler(policy)
    sets = [s for s in args.attention.split(",") if s]
    if device.type != "cuda":
        sets = sets[:1]  # SDPA backends are a CUDA matter
    meta = {
        **run_meta(args.preset, args.dtype, device),
        "mfu_peak_flops_per_s": peak,
        "command": "python bench/gpu_update_profile.py " + " ".join(argv or []),
    }
    rows = []
    for spec in args.runs.split(","):
        micro, ckpt = spec.split(":")
        rows += run(policy, fast, int(micro), ckpt == "on", cameras, args.iters, fp, peak, sets)
    result = {"meta": meta, "rows": rows}
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_update_profile.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
