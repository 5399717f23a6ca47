"""Device bytes of a run's two phases, rollout and update, for given settings.

A run alternates batched inference over the live envs (rollout) and the
RIPT update; both keep the single model copy and the optimizer state.
On a CPU-only machine the env workers' RAM shares the same pool.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ript_core.envs.spec import BackendFootprint
from ript_core.plan.cost import (
    fused_projection_bytes,
    grad_bytes,
    kv_cache_bytes,
    model_bytes,
    optimizer_state_bytes,
    rollout_activation_bytes,
    update_activation_bytes,
)
from ript_core.plan.footprint import PolicyFootprint
from ript_core.plan.machine import MachineSpec

#: Whether the planner turns activation checkpointing on by itself when the
#: update does not fit a useful micro-batch without it
#: (ript_core.policy.activation_checkpointing; identical gradients). Its memory model is
#: validated against GPU peaks (docs/planner.md).
ACTIVATION_CHECKPOINTING_AVAILABLE = True


@attrs.frozen
class PhaseBytes:
    """Itemised device bytes of each phase (name -> bytes)."""

    rollout: dict[str, int]
    update: dict[str, int]

    def peaks(self) -> dict[str, int]:
        return {"rollout": sum(self.rollout.values()), "update": sum(self.update.values())}


def phase_bytes(
    machine: MachineSpec,
    policy: PolicyFootprint,
    backend: BackendFootprint,
    n_env: int,
    inference_batch: int,
    micro_batch: int,
    checkpointing: bool,
) -> PhaseBytes:
    """The device bytes of both phases with these settings."""
    weights = model_bytes(policy)  # ONE copy, independent of n_env
    state = optimizer_state_bytes(policy)
    envs = n_env * backend.env_ram_bytes if machine.device == "cpu" else 0
    rollout = {
        "weights": weights,
        "optimizer_state": state,
        "kv_cache": kv_cache_bytes(policy, inference_batch),
        "activations": rollout_activation_bytes(policy, inference_batch),
    }
    update = {
        "weights": weights,
        "optimizer_state": state,
        "gradients": grad_bytes(policy),
        "activations": update_activation_bytes(policy, micro_batch, checkpointing),
    }
    if machine.device == "cpu":
        rollout["env_workers"] = envs
        update["env_workers"] = envs
    else:
        # made by the first chunk, kept with the sampler through the update
        rollout["fused_projections"] = update["fused_projections"] = fused_projection_bytes(policy)
    return PhaseBytes(rollout, update)


def largest_fitting(limit: int, fits: Callable[[int], bool]) -> int:
    """Largest n in 1..limit with fits(n) (fits is monotone); 0 if none."""
    if limit < 1 or not fits(1):
        return 0
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def min_peak(machine: MachineSpec, policy: PolicyFootprint, backend: BackendFootprint) -> int:
    """Smallest possible device peak: 1 env (on CPU), batch 1, micro-batch 1,
    checkpointing if the update has it."""
    n_env = 1 if machine.device == "cpu" else 0
    ckpt = ACTIVATION_CHECKPOINTING_AVAILABLE
    return max(phase_bytes(machine, policy, backend, n_env, 1, 1, ckpt).peaks().values())
