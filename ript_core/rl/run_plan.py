"""A training run's memory-aware plan: what the planner (``ript_core.plan``)
decides for this rank, how ``update.distributed: auto`` resolves, and the
``plan.json`` every run writes. The trainer calls these once at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import torch

from ript_core import plan as P
from ript_core.plugins import get_registry
from ript_core.policy import PI0Policy
from ript_core.rl import distributed as D
from ript_core.rl.config import TrainConfig
from ript_core.rl.fsdp import fsdp_footprint


def plan_distributed(
    cfg: TrainConfig, policy: PI0Policy, dist: D.DistInfo
) -> tuple[str, P.ParallelPlan]:
    """``update.distributed`` resolved, and the plan for it.

    ``auto`` replicates (DDP) when the replicated plan fits a device and
    shards (FSDP) when it does not; one process, or a bf16 policy, never shards.
    """
    mode = cfg.update.distributed
    if dist.world_size == 1:
        return "ddp", plan_rank(cfg, policy, dist)
    if mode == "auto":
        replicated = plan_rank(cfg, policy, dist)
        # bf16 never shards: FSDP keeps no float32 master weights (RunConfig.check)
        if replicated.fits or cfg.policy.dtype == "bfloat16":
            return "ddp", replicated
        mode = "fsdp"
    return mode, plan_rank(cfg, policy, dist, sharded=mode == "fsdp")


def plan_rank(
    cfg: TrainConfig, policy: PI0Policy, dist: D.DistInfo, sharded: bool = False
) -> P.ParallelPlan:
    """The memory-aware plan for this rank; the user's explicit settings win."""
    machine = P.detect_machine()
    # ranks on one host share its cores and RAM
    world = dist.world_size
    shared = {
        "cpu_cores": max(1, machine.cpu_cores // world),
        "cpu_ram_bytes": machine.cpu_ram_bytes // world,
    }
    if machine.device == "cpu":  # the model lives in the same RAM
        shared.update(
            device_total_bytes=machine.device_total_bytes // world,
            device_free_bytes=machine.device_free_bytes // world,
        )
    machine = attrs.evolve(machine, **shared)
    footprint = P.PolicyFootprint.from_hf_config(
        policy.arch.pi0_config,
        dtype_bytes=policy.dtype.itemsize,  # as loaded
        n_cameras=len(policy.arch.cameras),
    ).for_strategy(
        cfg.policy.strategy if cfg.policy.strategy != "full" or cfg.policy.train_vlm else "expert",
        lora=cfg.policy.lora,
    )
    footprint = attrs.evolve(footprint, optimizer_moments=cfg.optim.moments)
    if sharded:  # this rank's share of the sharded gradients and AdamW state
        footprint = fsdp_footprint(footprint, policy.model, world)
    backend = get_registry().footprint(cfg.env.backend)  # the backend spec's
    overrides: dict[str, Any] = {}
    if cfg.rollout.n_workers:
        overrides["n_env_workers"] = cfg.rollout.n_workers
    if cfg.update.micro_batch:
        overrides["train_micro_batch"] = cfg.update.micro_batch
    if cfg.rollout.pipeline_groups:
        overrides["pipeline_groups"] = cfg.rollout.pipeline_groups
    if sharded or cfg.update.activation_checkpointing == "off":
        overrides["activation_checkpointing"] = False  # FSDP: not supported (config check)
    elif cfg.update.activation_checkpointing == "on":
        overrides["activation_checkpointing"] = True
    return P.plan(
        machine,
        footprint,
        backend,
        rollouts_per_update=cfg.ript.group_size * cfg.ript.groups_per_iteration,
        overrides=overrides,
        replan_every=cfg.env.replan_every,
        # the estimate assumes the CUDA fast sampler's power-of-two batch
        # buckets on a GPU; the eager loop runs exact batches
        inference_cost=None
        if cfg.policy.fast_sampler
        else P.InferenceCost.estimate(footprint, machine, bucketed=False),
    )


def write_plan(
    run_dir: Path,
    cfg: TrainConfig,
    plan: P.ParallelPlan,
    dist: D.DistInfo,
    device: torch.device,
    micro_batch: int,
    *,
    distributed: str,
    fsdp_comm_timed: bool,
) -> None:
    """``<run_dir>/plan.json``: what the planner chose on every rank (collective).

    Each rank plans for its share of the host (cores, RAM; on CPU also the
    memory) and its own device, so the plans may differ; benchmarks and
    post-mortems read them here rather than from the logs.
    """
    mine = {
        "rank": dist.rank,
        "local_rank": dist.local_rank,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        **plan.settings(),
        "micro_batch": micro_batch,
        "env_workers": plan.n_env_workers if cfg.rollout.n_workers != 0 else 0,
        "in_process_envs": cfg.rollout.in_process_envs if cfg.rollout.n_workers == 0 else 0,
        "overridden": list(plan.overridden),
        "predicted_peak_gb": {k: v / 1e9 for k, v in plan.peak_bytes.items()},
        "usable_gb": plan.usable_bytes / 1e9,
        "fits": plan.fits,
        "torch_threads": torch.get_num_threads(),
    }
    ranks = D.gather_objects(mine)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        summary = {
            "world_size": dist.world_size,
            "distributed_requested": cfg.update.distributed,
            "distributed": distributed,
            "strategy": cfg.policy.strategy,
            "dtype": cfg.policy.dtype,
            "time_comm": cfg.update.time_comm,
            "fsdp_comm_timed": fsdp_comm_timed,
            "ranks": ranks,
        }
        (run_dir / "plan.json").write_text(json.dumps(summary, indent=2) + "\n")
