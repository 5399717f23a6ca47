"""The update section of the GPU policy bench (:mod:`.gpu_policy`): the RIPT
update (``log_prob`` of an SDE chain + PPO loss + backward) per micro-batch,
samples/s and MFU, with and without ript-core's activation checkpointing, and
the log-probs it recomputes against the ones the sampler recorded."""

from __future__ import annotations

import json
import statistics
from typing import Any

import torch

from ript_core import plan as pl
from ript_core.bench.harness import max_diff, p90, timings
from ript_core.bench.pi0 import release, update_step
from ript_core.policy import PI0Policy
from ript_core.policy.activation_checkpointing import set_activation_checkpointing
from ript_core.policy.attention import update_kernels
from ript_core.policy.fast.compiled_layers import layers_compiled
from ript_core.policy.fast.sampler import FastSampler


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
