"""Every built-in strategy's memory and plan side by side, for ``ript plan``."""

from __future__ import annotations

from typing import Any

import attrs

from ript_core.envs.spec import BackendFootprint
from ript_core.plan.cost import (
    grad_bytes,
    kv_cache_bytes,
    model_bytes,
    optimizer_state_bytes,
    update_activation_bytes,
)
from ript_core.plan.footprint import PolicyFootprint, Strategy
from ript_core.plan.machine import MachineSpec
from ript_core.plan.parallel_plan import ParallelPlan
from ript_core.plan.planner import plan
from ript_core.plan.strategy import STRATEGY_PREFERENCE


@attrs.frozen
class StrategyCost:
    """One strategy's memory, itemised for ``ript plan`` (bytes)."""

    strategy: Strategy
    n_trainable: int
    trainable_weight_bytes: int
    frozen_weight_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    activations_per_sample: int
    activations_per_sample_ckpt: int
    prefix_cache_per_sample: int
    plan: ParallelPlan


def strategy_costs(
    machine: MachineSpec,
    policy: PolicyFootprint,
    backend: BackendFootprint,
    *,
    rollouts_per_update: int,
    lora: Any | None = None,
    **plan_kwargs: Any,
) -> list[StrategyCost]:
    """Every built-in strategy on this machine: parameters, weights split into
    trainable / frozen, gradients, AdamW state, update activations per sample
    with and without checkpointing, the rollout-time prefix KV cache per
    sample, and the planner's own plan for it (no overrides)."""
    out: list[StrategyCost] = []
    for s in STRATEGY_PREFERENCE:
        fp = policy.for_strategy(s, lora=lora)
        trainable_w = fp.n_trainable * fp.dtype_bytes
        out.append(
            StrategyCost(
                strategy=s,
                n_trainable=fp.n_trainable,
                trainable_weight_bytes=trainable_w,
                frozen_weight_bytes=model_bytes(fp) - trainable_w,
                grad_bytes=grad_bytes(fp),
                optimizer_bytes=optimizer_state_bytes(fp),
                activations_per_sample=update_activation_bytes(fp, 1, False),
                activations_per_sample_ckpt=update_activation_bytes(fp, 1, True),
                prefix_cache_per_sample=kv_cache_bytes(fp),
                plan=plan(
                    machine, fp, backend, rollouts_per_update=rollouts_per_update, **plan_kwargs
                ),
            )
        )
    return out
