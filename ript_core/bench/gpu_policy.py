"""PI0 on one GPU, in one run: correctness, sampling latency/throughput, RIPT
update MFU, memory plan -- ours vs transformers' ``sample_actions``.

Usage (GPU, full size; what docs/benchmarks.md reports)::

    python bench/gpu_policy.py --preset pi0 --dtype bf16 --out bench/results

CPU smoke test (tests/bench/test_gpu_benches.py runs this code path)::

    python bench/gpu_policy.py --preset pi0-tiny --dtype fp32 --batch-sizes 1,2 --iters 2

Builds the policy once (random weights: speed and memory do not depend on
their values), then for each batch size:

- correctness: max |ours - transformers| of the ODE actions under the same
  float32 noise; also ours (fast) vs ours (eager loop), ODE and SDE (chain and
  log-prob, same per-sample generators);
- timing: (a) transformers' ``sample_actions`` as shipped, (b) our ODE and
  (c) our SDE sampler through :class:`~ript_core.policy.fast.sampler.FastSampler`
  (CUDA graphs on a GPU; the same static-cache code without graphs on CPU) --
  median and p90 ms per chunk call, chunks/s, achieved TFLOP/s and the floor;
- the RIPT update (``log_prob`` of an SDE chain + PPO clipped loss + backward)
  at the planner's micro-batch, samples/s and MFU, with and without
  ript-core's activation checkpointing (ript_core.policy.activation_checkpointing);
- the memory plan: the planner's predicted peak vs ``max_memory_allocated``.

FLOPs come from the planner's :func:`~ript_core.plan.sample_flops`
(2 per weight per token + attention products); the floor is
``max(FLOPs / matmul rate, bytes / copy bandwidth)`` with both rates measured
here (a large bf16 matmul; a large device copy) and the bytes the weights
must be read once (VLM once, the expert once per step) plus the KV cache
once per step. Writes ``gpu_policy.json``, ``gpu_update.json``,
``memory_plan.json`` under ``--out`` and prints tables.

The sections live in :mod:`.gpu_sampling`, :mod:`.gpu_update` and
:mod:`.gpu_memory`; this module builds the policy once and runs them in turn
(then the regional-compile passes, on CUDA).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from ript_core import plan as pl
from ript_core.bench.gpu_memory import memory_rows
from ript_core.bench.gpu_sampling import ceilings, sampling_rows
from ript_core.bench.gpu_update import update_rows
from ript_core.bench.harness import DTYPES, H100_BF16_PEAK, model_parser, run_meta
from ript_core.bench.pi0 import footprint, machine_spec, release
from ript_core.plugins import get_registry
from ript_core.policy import PI0Policy
from ript_core.policy.fast import compiled_layers as compiled_layers_module
from ript_core.policy.fast.compiled_layers import compiled_layers
from ript_core.policy.fast.sampler import FastSampler


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = model_parser(__doc__)
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--update-iters", type=int, default=5)
    parser.add_argument("--rollouts", type=int, default=64, help="rollouts per update (planner)")
    parser.add_argument("--workers", default="1,4,8,16", help="env workers for the memory plan")
    parser.add_argument("--skip", default="", help="comma list of: sampling,update,memory,compile")
    parser.add_argument("--update-micro", default="8,16,32", help="extra update micro-batches")
    parser.add_argument(
        "--update-ckpt-micro",
        default="32,64",
        help="update micro-batches timed with activation checkpointing",
    )
    parser.add_argument(
        "--memory-ckpt-micro",
        default="16,64",
        help="checkpointed update micro-batches in the memory plan ('' to skip)",
    )
    parser.add_argument(
        "--compile-update-micro",
        default="16",
        help="update micro-batches re-timed through the compiled layers ('' to skip)",
    )
    parser.add_argument(
        "--compile-update-ckpt-micro",
        default="32",
        help="checkpointed update micro-batches through the compiled layers ('' to skip)",
    )
    parser.add_argument(
        "--compile-batch-sizes", default="1,64", help="batches of the regional-compile pass"
    )
    parser.add_argument(
        "--compile-mode",
        default=None,
        help="torch.compile mode of the compiled layers (default: inductor's default)",
    )
    parser.add_argument(
        "--optim-moments",
        choices=pl.OPTIMIZER_MOMENTS,
        default="fp32",
        help="AdamW moments the planner budgets for (optim.moments): its micro-batch",
    )
    parser.add_argument(
        "--attention",
        choices=("auto", "masks"),
        default="auto",
        help="the fast sampler's attention: auto (key-limited FlashAttention where it "
        "runs, varlen_attention.py) or masks (SDPA over boolean masks, the route before)",
    )
    parser.add_argument(
        "--fuse-projections",
        choices=("on", "off"),
        default="on",
        help="the expert's q/k/v and gate/up as one GEMM each in the steps "
        "(fused_projections.py; on by default with CUDA graphs)",
    )
    parser.add_argument("--out", default=None, help="directory for the JSON results")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    compiled_layers_module.MODE = args.compile_mode
    # a layer past dynamo's recompile limit would run eagerly with only a log
    # warning: a compiled row must not silently include eager layers
    torch._dynamo.config.fail_on_recompile_limit_hit = True

    t0 = time.perf_counter()
    policy = PI0Policy.from_preset(
        args.preset, seed=0, dtype=DTYPES[args.dtype], device=args.device, logp_horizon=5
    )
    device = policy.device
    cameras = min(args.cameras, len(policy.arch.cameras))
    fp = attrs.evolve(footprint(policy, cameras), optimizer_moments=args.optim_moments)
    rate, bw, source = ceilings(device, policy.dtype)
    peak = H100_BF16_PEAK if device.type == "cuda" else rate
    varlen = None if args.attention == "auto" else False
    fuse = None if args.fuse_projections == "on" else False
    fast = FastSampler(policy, varlen=varlen, fuse_projections=fuse)
    meta = {
        **run_meta(args.preset, args.dtype, device),
        "params": sum(p.numel() for p in policy.parameters()),
        "fuse_projections": args.fuse_projections,
        "cameras": cameras,
        "image_size": policy.arch.image_size,
        "text_tokens": policy.arch.max_token_len,
        "chunk": policy.chunk_size,
        "steps": policy.num_steps,
        "cuda_graphs": fast.use_graphs,
        "attention": "key-limited flash" if fast.varlen else "sdpa masks",
        "matmul_flops_per_s": rate,
        "copy_bytes_per_s": bw,
        "ceilings": source,
        "sample_flops_per_chunk": pl.sample_flops(fp),
        "build_s": time.perf_counter() - t0,
        "compile_mode": args.compile_mode,
        "optim_moments": args.optim_moments,
    }
    print("meta", json.dumps(meta), flush=True)
    result: dict[str, Any] = {"meta": meta}

    def save() -> None:
        # after every section: a later section that dies still leaves these
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            for name in ("gpu_policy", "gpu_update", "memory_plan"):
                if name in result:
                    (out / f"{name}.json").write_text(json.dumps(result[name], indent=1) + "\n")

    sizes = [int(b) for b in args.batch_sizes.split(",")]
    refs: dict[int, dict[str, torch.Tensor]] = {}
    if "sampling" not in skip:
        rows, checks = sampling_rows(
            policy, fast, sizes, cameras, args.iters, fp, rate, bw, args.warmup, "ript", refs
        )
        meta["capture_error"] = fast.capture_error
        result["gpu_policy"] = {"meta": meta, "checks": checks, "rows": rows}
        save()
    if "update" not in skip:
        meta["allocated_gb_before_update"] = release(policy, fast)
        spec = machine_spec(device)
        toy = get_registry().footprint("toy")
        plan = pl.plan(spec, fp, toy, rollouts_per_update=args.rollouts)
        # the plan without checkpointing: its micro-batch is timed plain
        runnable = pl.plan(
            spec,
            fp,
            toy,
            rollouts_per_update=args.rollouts,
            overrides={"activation_checkpointing": False},
        )
        micros = [runnable.train_micro_batch]
        micros += [m for m in (int(x) for x in args.update_micro.split(",")) if m not in micros]
        ckpt_micros = [int(x) for x in args.update_ckpt_micro.split(",") if x]
        if plan.activation_checkpointing and plan.train_micro_batch not in ckpt_micros:
            ckpt_micros.insert(0, plan.train_micro_batch)  # the planner's own choice
        rows = update_rows(policy, fast, micros, cameras, args.update_iters, fp, peak, ckpt_micros)
        result["gpu_update"] = {
            "meta": {
                **meta,
                "plan_default": plan.summary(),
                "plan_without_checkpointing": runnable.summary(),
                "mfu_peak_flops_per_s": peak,
            },
            "rows": rows,
        }
        save()
    if "memory" not in skip:
        # what the sections before left allocated (the weights and nothing
        # else): every measured peak includes it
        meta["allocated_gb_before_memory"] = release(policy, fast)
        workers = [int(w) for w in args.workers.split(",")]
        ckpt_micros = [int(x) for x in args.memory_ckpt_micro.split(",") if x]
        rows = memory_rows(policy, fast, fp, cameras, workers, args.rollouts, ckpt_micros)
        result["memory_plan"] = {"meta": meta, "rows": rows}
        save()
    if "compile" not in skip and "sampling" not in skip and device.type == "cuda":
        meta["allocated_gb_before_compile"] = release(policy, fast)
        # the compiled layers are installed only inside this sampler's chunks
        compiled = FastSampler(policy, compile_layers=True, varlen=varlen, fuse_projections=fuse)
        csizes = [int(b) for b in args.compile_batch_sizes.split(",")]
        try:
            t1 = time.perf_counter()
            rows, checks = sampling_rows(
                policy, compiled, csizes, cameras, args.iters, fp, rate, bw, args.warmup,
                "ript+compile", refs,
            )  # fmt: skip
            meta["compile_pass_s"] = time.perf_counter() - t1
            result["gpu_policy"]["rows"] += rows
            result["gpu_policy"]["checks"] += checks
        except Exception as exc:  # report, keep what the other sections measured
            meta["compile_error"] = f"{type(exc).__name__}: {exc}"[:500]
            print("compile pass failed:", meta["compile_error"], flush=True)
        save()
    if "compile" not in skip and "update" not in skip and device.type == "cuda":
        if "sampling" in skip:  # no sampler from the pass above
            compiled = FastSampler(
                policy, compile_layers=True, varlen=varlen, fuse_projections=fuse
            )
        if "compile_error" not in meta:
            # the RIPT update through the same compiled layers (AOTAutograd
            # compiles their backward on the first step): fewer, fused kernels
            # for the host to launch in forward and backward
            t1 = time.perf_counter()
            micros = [int(x) for x in args.compile_update_micro.split(",") if x]
            # the policy's log_prob stays eager; install the compiled layers
            # around the update by hand to time it through them
            # (what update.compile does in the trainer)
            ckpt_micros = [int(x) for x in args.compile_update_ckpt_micro.split(",") if x]
            with compiled_layers(policy.model).installed():
                rows = update_rows(
                    policy,
                    compiled,
                    micros,
                    cameras,
                    args.update_iters,
                    fp,
                    peak,
                    ckpt_micros,
                    ckpt_first=False,  # each compiled shape costs minutes: only what was asked
                )
            for r in rows:
                r["compiled_layers"] = True
            result["gpu_update"]["rows"] += rows
            meta["compile_update_pass_s"] = time.perf_counter() - t1
            save()
    return result
