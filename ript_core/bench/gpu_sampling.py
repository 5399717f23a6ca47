"""The sampling section of the GPU policy bench (:mod:`.gpu_policy`): per batch
size, our fast sampler's ODE/SDE output against transformers' ``sample_actions``
and our eager loop, then median/p90 latency, chunks/s and TFLOP/s against the
floor that the measured matmul rate and copy bandwidth allow."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

import torch

from ript_core import plan as pl
from ript_core.bench.harness import max_diff, p90, timings
from ript_core.bench.pi0 import gens, make_inputs, reference
from ript_core.policy import PI0Policy, PolicyBatch
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
