"""The memory section of the GPU policy bench (:mod:`.gpu_policy`): the
planner's predicted peak per phase (rollout, update; plain and checkpointed)
against ``torch.cuda.max_memory_allocated``."""

from __future__ import annotations

import json
from typing import Any

import torch

from ript_core import plan as pl
from ript_core.bench.pi0 import gens, machine_spec, make_inputs, release
from ript_core.plugins import get_registry
from ript_core.policy import PI0Policy, PolicyBatch
from ript_core.policy.activation_checkpointing import set_activation_checkpointing
from ript_core.policy.fast.sampler import FastSampler


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
    machine = machine_spec(device)
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
