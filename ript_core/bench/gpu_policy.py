"""PI0 on one GPU, in one run: correctness, sampling latency/throughput, RIPT
update MFU, memory plan -- ours vs transformers' ``sample_actions``.

Usage (GPU, full size; what docs/benchmarks.md reports)::

    python bench/gpu_policy.py --preset pi0 --dtype bf16 --out bench/results

CPU smoke test (tests/policy/test_gpu_bench.py runs this code path)::

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
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import torch

from ript_core import plan as pl
from ript_core.bench.harness import (
    DTYPES,
    H100_BF16_PEAK,
    max_diff,
    model_parser,
    p90,
    run_meta,
    timings,
)
from ript_core.bench.pi0 import (
    footprint,
    gens,
    make_inputs,
    reference,
    release,
    update_step,
)
from ript_core.plugins import get_registry
from ript_core.policy import PI0Policy, PolicyBatch
from ript_core.policy.activation_checkpointing import set_activation_checkpointing
from ript_core.policy.attention import update_kernels
from ript_core.policy.fast import compiled_layers as compiled_layers_module
from ript_core.policy.fast.compiled_layers import compiled_layers, layers_compiled
from ript_core.policy.fast.sampler import FastSampler


def ceilings(device: torch.device, dtype: torch.dtype) -> tuple[float, float, str]:
    """(matmul FLOP/s, copy bytes/s, source): measured on a GPU, nominal on CPU."""
    if device.type != "cuda":
        return 1e11, 1e10, "nominal CPU figures (smoke test only)"
    n = 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    ms = statistics.median(timings(lambda a=a, b=b: a @ b, device, 20, 3))
    flops = 2 * n**3 / (ms / 1e3)
    src = torch.randn(1 << 29, device=device, dtype=torch.bfloat16)  # 1 GiB
    dst = torch.empty_like(src)
    ms = statistics.median(timings(lambda d=dst, s=src: d.copy_(s), device, 20, 3))
    bw = 2 * src.numel() * src.element_size() / (ms / 1e3)  # read + write
    del a, b, src, dst
    torch.cuda.empty_cache()
    return flops, bw, f"measured: {n}^3 {dtype} matmul, 1 GiB device copy"


def floor_ms(fp: pl.PolicyFootprint, bsz: int, rate: float, bw: float) -> tuple[float, str]:
    flops = pl.sample_flops(fp) * bsz
    weights = (fp.n_vlm_params + fp.num_steps * fp.n_expert_params) * fp.dtype_bytes
    kv = fp.num_steps * pl.kv_cache_bytes(fp, bsz)
    t_flop, t_mem = flops / rate * 1e3, (weights + kv) / bw * 1e3
    why = (
        f"max({flops / 1e12:.3g} TFLOP / {rate / 1e12:.0f} TFLOP/s = {t_flop:.3g} ms, "
        f"({weights / 1e9:.3g} GB weights + {kv / 1e9:.3g} GB KV) / {bw / 1e12:.2f} TB/s "
        f"= {t_mem:.3g} ms)"
    )
    return max(t_flop, t_mem), why


def sampling_rows(
    policy: PI0Policy,
    fast: FastSampler,
    batch_sizes: list[int],
    cameras: int,
    iters: int,
    fp: pl.PolicyFootprint,
    rate: float,
    bw: float,
    warmup: int = 2,
    label: str = "ript",
    refs: dict[int, dict[str, torch.Tensor]] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``refs`` (batch -> noise and reference outputs) is filled on the
    first pass and reused by later ones (a compiled pass changes the layers
    transformers' loop runs too; its reference must be the uncompiled one);
    transformers is timed only on the pass that fills it."""
    device = policy.device
    first = refs is None or not refs
    refs = {} if refs is None else refs
    level, steps = policy.config.noise_level, policy.num_steps
    rows, checks = [], []
    for bsz in batch_sizes:
        batch = policy.preprocess(make_inputs(policy, bsz, cameras, seed=bsz))
        shape = (bsz, policy.chunk_size, policy.max_action_dim)
        if bsz not in refs:
            # the references, computed once with the uncompiled layers:
            # transformers' loop and our eager loop under the same noise/generators
            noise = torch.randn(shape, generator=torch.Generator().manual_seed(bsz)).to(device)
            policy.config.fast_sampler = False
            try:
                eager_ode = policy.sample(batch, "ode", noise=noise)
                eager_sde = policy.sample(batch, "sde", generator=gens(bsz, 100, device))
            finally:
                policy.config.fast_sampler = True
            refs[bsz] = {
                "noise": noise,
                "transformers": reference(policy, batch, noise),
                "eager_ode": eager_ode.actions,
                "eager_sde_chain": eager_sde.chain,
                "eager_sde_logp": eager_sde.log_prob,
            }
        r = refs[bsz]
        noise = r["noise"]

        # ---- correctness (same noise / same generators) ---------------------------
        ode = fast.sample(batch, "ode", None, noise, 0.0, steps)
        sde = fast.sample(batch, "sde", gens(bsz, 100, device), None, level, steps)
        rescored: float | None = None
        if first:  # re-scoring runs the layers eagerly: not on a compiled pass
            with torch.no_grad():
                rescored = max_diff(sde.log_prob, policy.log_prob(batch, sde.chain))
        check = {
            "impl": label,
            "batch": bsz,
            "ode_vs_transformers": max_diff(ode.actions, r["transformers"]),
            "ode_vs_eager": max_diff(ode.actions, r["eager_ode"]),
            "sde_chain_vs_eager": max_diff(sde.chain, r["eager_sde_chain"]),
            "sde_logp_vs_eager": max_diff(sde.log_prob, r["eager_sde_logp"]),
            "sde_logp_vs_rescored": rescored,
            "sde_logp_mean": float(sde.log_prob.mean()),
            "finite": bool(torch.isfinite(sde.chain).all() and torch.isfinite(ode.chain).all()),
        }
        checks.append(check)
        print("check", json.dumps(check), flush=True)

        # ---- timing -------------------------------------------------------------
        floor, why = floor_ms(fp, bsz, rate, bw)
        flops = pl.sample_flops(fp) * bsz
        ref_iters = max(2, iters // 4)  # ~0.3-0.6 s a call: fewer repeats

        def run_ref(batch: PolicyBatch = batch, noise: torch.Tensor = noise) -> object:
            return reference(policy, batch, noise)

        def run_ode(batch: PolicyBatch = batch, noise: torch.Tensor = noise) -> object:
            return fast.sample(batch, "ode", None, noise, 0.0, steps)

        def run_sde(batch: PolicyBatch = batch, bsz: int = bsz) -> object:
            # per-sample generators, as the rollout runner passes them
            return fast.sample(batch, "sde", gens(bsz, 100, device), None, level, steps)

        diff = check["ode_vs_transformers"]
        # SDE has no transformers counterpart: its correctness is the
        # chain/log-prob check against our eager loop above
        variants: list[tuple[str, str, Callable[[], object], int, float | None]] = [
            ("transformers", "ode", run_ref, ref_iters, diff),
            (label, "ode", run_ode, iters, diff),
            (label, "sde", run_sde, iters, None),
        ][0 if first else 1 :]
        for impl, mode, fn, n, diff in variants:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            ts = timings(fn, device, n, warmup)
            med = statistics.median(ts)
            row = {
                "impl": impl,
                "mode": mode,
                "batch": bsz,
                "median_ms": med,
                "p90_ms": p90(ts),
                "chunks_per_s": bsz * 1e3 / med,
                "tflops": flops / (med / 1e3) / 1e12,
                "floor_ms": floor,
                "ratio_to_floor": med / floor,
                "floor_arithmetic": why,
                "max_abs_diff_vs_reference": diff,
                "peak_gb": torch.cuda.max_memory_allocated(device) / 1e9
                if device.type == "cuda"
                else None,
                "iters": n,
            }
            rows.append(row)
            print(
                f"{impl:12s} {mode} B={bsz:3d}: median {med:8.2f} ms  p90 {row['p90_ms']:8.2f}  "
                f"{row['chunks_per_s']:7.1f} chunks/s  {row['tflops']:6.1f} TFLOP/s  "
                f"{row['ratio_to_floor']:.2f}x floor",
                flush=True,
            )
        fast.clear()  # free this batch size's graphs before the next
    return rows, checks


def update_rows(
    policy: PI0Policy,
    fast: FastSampler,
    micros: list[int],
    cameras: int,
    iters: int,
    fp: pl.PolicyFootprint,
    peak: float,
    ckpt_micros: list[int] | None = None,
    ckpt_first: bool = True,
) -> list[dict[str, Any]]:
    """log_prob (SDE chain, every step scored) + PPO clipped loss + backward,
    per micro-batch; checkpointing tried once, at the first micro-batch
    (unless ``ckpt_first`` is off).

    The row with ``checkpointing: true`` runs ript-core's activation
    checkpointing (every layer recomputed in backward) at the same
    micro-batch: the compute it costs, and the peak memory it saves."""
    runs = [
        (m, ckpt)
        for i, m in enumerate(micros)
        for ckpt in ((False, True) if i == 0 and ckpt_first else (False,))
    ]
    # checkpointing's point: micro-batches that do not fit without it
    runs += [(m, True) for m in ckpt_micros or [] if (m, True) not in runs]
    rows = []
    for micro, ckpt in runs:
        rows.append(_update_row(policy, fast, micro, ckpt, cameras, iters, fp, peak))
        print("update", json.dumps(rows[-1]), flush=True)
        release(policy, fast)
    return rows


def _update_row(
    policy: PI0Policy,
    fast: FastSampler,
    micro: int,
    ckpt: bool,
    cameras: int,
    iters: int,
    fp: pl.PolicyFootprint,
    peak: float,
) -> dict[str, Any]:
    device = policy.device
    # forward + backward = 3x the forward FLOPs (all of VLM, vision and expert train)
    flops = 3.0 * pl.sample_flops(fp) * micro
    row: dict[str, Any] = {"micro_batch": micro, "checkpointing": ckpt}
    try:
        step, batch, out = update_step(policy, fast, micro, cameras)
        chain, old = out.chain, out.log_prob
        if ckpt:
            # ript-core's own (ript_core.policy.activation_checkpointing): transformers'
            # turns the prefix cache off in train mode, which the expert needs
            set_activation_checkpointing(policy.model, True)
        with torch.no_grad():
            same = max_diff(policy.log_prob(batch, chain, out.stochastic_step), old)
        # update.old_log_prob "recompute" as PI0Actor.old_log_prob runs it (no
        # graph kept, the update's kernels; grad mode on through compiled
        # layers) -- must equal the gradient pass's own forward
        with torch.set_grad_enabled(layers_compiled(policy.model)), update_kernels():
            recomputed = policy.log_prob(batch, chain, out.stochastic_step).detach()
        # the gradient pass's own forward, with its backward: a forward under
        # checkpointing whose graph is dropped without a backward is never
        # freed (checkpoint frames, the prefix cache and the graph hold each
        # other through autograd, where the collector cannot see)
        logp = policy.log_prob(batch, chain, out.stochastic_step)
        graded = logp.detach()
        logp.sum().backward()
        del logp
        policy.zero_grad(set_to_none=True)
        recomputed_vs_update = max_diff(recomputed, graded)
        del graded
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        ts = timings(step, device, iters, 1)
        med = statistics.median(ts)
        row.update(
            samples_per_s=micro * 1e3 / med,
            mfu=flops / (med / 1e3) / peak,
            median_ms=med,
            p90_ms=p90(ts),
            tflops=flops / (med / 1e3) / 1e12,
            logp_vs_recorded=same,
            old_recomputed_vs_update=recomputed_vs_update,
            peak_gb=torch.cuda.max_memory_allocated(device) / 1e9
            if device.type == "cuda"
            else None,
        )
    except Exception as exc:  # a failed variant (OOM, unsupported) is a result
        row.update(samples_per_s=None, mfu=None, error=f"{type(exc).__name__}: {exc}"[:300])
    finally:
        policy.zero_grad(set_to_none=True)
        if ckpt:
            set_activation_checkpointing(policy.model, False)
    return row


def predicted_update(fp: pl.PolicyFootprint, micro: int, checkpointing: bool) -> int:
    """The planner's update peak for what this bench allocates: weights, the
    gradients in the model dtype and the activations (no optimizer state)."""
    return (
        pl.model_bytes(fp)
        + fp.n_trainable * fp.dtype_bytes
        + pl.update_activation_bytes(fp, micro, checkpointing)
    )


def update_peak(policy: PI0Policy, fast: FastSampler, batch: PolicyBatch) -> int | None:
    """Peak allocated bytes of the update on ``batch`` (None off CUDA): an SDE
    chain is sampled first (not counted), then two accumulated micro-batches
    of ``log_prob`` + backward, as the trainer runs them -- the second one's
    activations meet the first one's gradients."""
    device = policy.device
    out = fast.sample(
        batch, "sde", gens(len(batch), 300, device), None, policy.config.noise_level,
        policy.num_steps,
    )  # fmt: skip
    fast.clear()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for _ in range(2):
            policy.log_prob(batch, out.chain, out.stochastic_step).sum().backward()
    finally:
        policy.zero_grad(set_to_none=True)
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def memory_rows(
    policy: PI0Policy,
    fast: FastSampler,
    fp: pl.PolicyFootprint,
    cameras: int,
    workers: list[int],
    rollouts: int,
    ckpt_micros: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Predicted vs measured peak per phase. The bench allocates no optimizer:
    the prediction here leaves out the planner's optimizer state and fp32
    master copy (kept across phases) and counts gradients in the model dtype
    (what plain autograd allocates), so the two sides cover the same tensors.
    The update accumulates two micro-batches, as the trainer does."""
    device = policy.device
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        machine = pl.MachineSpec.gpu(total, 16, 128 << 30, device_free_bytes=free)
    else:
        machine = pl.MachineSpec.cpu_only(8 << 30, 2)
    rows = []
    for n_env in workers:
        plan = pl.plan(
            machine,
            fp,
            get_registry().footprint("toy"),
            rollouts_per_update=rollouts,
            overrides={"n_env_workers": n_env, "activation_checkpointing": False},
        )
        ib, mb = plan.inference_batch, plan.train_micro_batch
        weights = pl.model_bytes(fp)
        # the fast sampler's fused expert copies, where it makes them (CUDA graphs)
        fused = pl.fused_projection_bytes(fp) if fast.fuse_projections else 0
        predicted = {
            "rollout": weights
            + pl.kv_cache_bytes(fp, ib)
            + pl.rollout_activation_bytes(fp, ib)
            + fused,
            "update": predicted_update(fp, mb, checkpointing=False),
        }
        measured: dict[str, int | None] = {}
        batch = policy.preprocess(make_inputs(policy, ib, cameras, seed=n_env))
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        fast.sample(
            batch, "sde", gens(ib, 300, device), None, policy.config.noise_level, policy.num_steps
        )
        fast.clear()
        measured["rollout"] = (
            torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
        )
        batch = policy.preprocess(make_inputs(policy, mb, cameras, seed=n_env))
        measured["update"] = update_peak(policy, fast, batch)
        for phase, b in (("rollout", ib), ("update", mb)):
            m = measured[phase]
            row = {
                "phase": phase,
                "workers": n_env,
                "batch": b,
                "predicted_gb": predicted[phase] / 1e9,
                "measured_gb": None if m is None else m / 1e9,
                "error": None if m is None else predicted[phase] / m - 1.0,
            }
            rows.append(row)
            print("memory", json.dumps(row), flush=True)
    for mb in ckpt_micros or []:
        # the planner's checkpointed update model (update_activation_bytes with
        # checkpointing) against ript_core.policy.activation_checkpointing, two
        # accumulated micro-batches as the trainer runs them
        predicted = predicted_update(fp, mb, checkpointing=True)
        batch = policy.preprocess(make_inputs(policy, mb, cameras, seed=mb))
        m: int | None = None
        error: str | None = None
        set_activation_checkpointing(policy.model, True)
        try:
            m = update_peak(policy, fast, batch)
        except torch.cuda.OutOfMemoryError as exc:
            error = f"OutOfMemoryError: {exc}"[:200]
        finally:
            set_activation_checkpointing(policy.model, False)
            release(policy, fast)
        row = {
            "phase": "update",
            "checkpointing": True,
            "workers": None,
            "batch": mb,
            "predicted_gb": predicted / 1e9,
            "measured_gb": None if m is None else m / 1e9,
            "error": None if m is None else predicted / m - 1.0,
            **({"failure": error} if error else {}),
        }
        rows.append(row)
        print("memory", json.dumps(row), flush=True)
    return rows


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
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            spec = pl.MachineSpec.gpu(total, 16, 128 << 30, device_free_bytes=free)
        else:
            spec = pl.MachineSpec.cpu_only(8 << 30, 2)
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
