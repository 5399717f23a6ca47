"""``ript plan``: print the memory-aware parallel plan for this (or another) machine.

Exit status 0 when the plan fits, 1 when it does not (so scripts can refuse
to launch a run that would run out of memory).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import attrs

from ript_core.cli.console import console
from ript_core.cli.registry import command
from ript_core.plan.footprint import OPTIMIZER_MOMENTS
from ript_core.plugins import BUILTIN_BACKEND, get_registry

# the planner is imported by the functions that use it: building the parser
# (`ript --help`) needs none of it
if TYPE_CHECKING:
    from ript_core.plan import (
        BackendFootprint,
        MachineSpec,
        PolicyFootprint,
    )
    from ript_core.policy.config import LoraSettings


def _plan_args(p: argparse.ArgumentParser) -> None:
    pol = p.add_argument_group("policy")
    pol.add_argument(
        "--preset",
        choices=("pi0", "pi0-tiny"),
        default="pi0-tiny",
        help="policy architecture to plan for (default pi0-tiny)",
    )
    pol.add_argument(
        "--strategy",
        choices=("full", "expert", "lora"),
        default="full",
        help="what trains: full | expert | lora (default full); every strategy's costs are "
        "printed too",
    )
    pol.add_argument(
        "--lora-rank", type=int, default=32, help="LoRA rank with --strategy lora (default 32)"
    )
    pol.add_argument(
        "--lora-targets",
        default="vlm,expert",
        help="stacks with LoRA adapters, comma-separated: vlm, expert (default both)",
    )
    pol.add_argument(
        "--dtype",
        choices=("bfloat16", "float32"),
        default=None,
        help="model dtype (default: bfloat16 on a GPU, float32 on CPU)",
    )
    pol.add_argument("--cameras", type=int, default=None, help="camera slots (pi0 default 3)")
    pol.add_argument(
        "--optim-moments",
        choices=OPTIMIZER_MOMENTS,
        default="fp32",
        help="AdamW's moments, as optim.moments (8bit: bitsandbytes' AdamW8bit)",
    )
    pol.add_argument(
        "--logp-steps",
        type=int,
        default=None,
        help="denoising steps recomputed with grad per sample (default: all sampling steps)",
    )
    run = p.add_argument_group("run")
    run.add_argument(
        "--rollouts-per-update",
        type=int,
        default=64,
        help="episodes per RIPT update: group_size x groups_per_iteration (default 64)",
    )
    run.add_argument(
        "--replan-every", type=int, default=5, help="env steps per action chunk (default 5)"
    )
    run.add_argument(
        "--episode-steps",
        type=int,
        default=None,
        help="env steps per episode: counts the pipeline's ramp (default: steady state)",
    )
    run.add_argument(
        "--train-batch",
        type=int,
        default=None,
        help="samples per optimizer step (default: rollouts)",
    )
    env = p.add_argument_group("env backend")
    env.add_argument(
        "--backend-footprint",
        choices=get_registry().backends(),
        default=BUILTIN_BACKEND,
        help="the installed backend whose per-env cost (its spec's footprint) to plan with",
    )
    env.add_argument("--env-ram-gb", type=float, default=None, help="RAM of one env worker")
    env.add_argument(
        "--env-step-ms",
        type=float,
        default=None,
        help="one env step's wall time in milliseconds (default: the backend's footprint)",
    )
    inf = p.add_argument_group(
        "policy speed (default: estimated from the architecture; give measured numbers)"
    )
    inf.add_argument("--policy-call-ms", type=float, default=None, help="fixed ms per policy call")
    inf.add_argument(
        "--policy-sample-ms", type=float, default=None, help="ms per sample of a policy call"
    )
    m = p.add_argument_group("machine (default: this one; any flag plans for another)")
    m.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="default: this machine's"
    )
    m.add_argument("--device-memory-gb", type=float, default=None, help="GPU memory (implies cuda)")
    m.add_argument(
        "--device-free-gb", type=float, default=None, help="free GPU memory (default: measured)"
    )
    m.add_argument(
        "--cpu-ram-gb", type=float, default=None, help="host RAM (default: this machine's)"
    )
    m.add_argument(
        "--cores", type=int, default=None, help="usable CPU cores (default: this machine's)"
    )
    o = p.add_argument_group("overrides (win over the planner's choice)")
    o.add_argument(
        "--n-env-workers", type=int, default=None, help="env worker processes (rollout.n_workers)"
    )
    o.add_argument(
        "--inference-batch", type=int, default=None, help="largest batch of one policy call"
    )
    o.add_argument(
        "--train-micro-batch",
        type=int,
        default=None,
        help="decisions per forward/backward in the update (update.micro_batch)",
    )
    o.add_argument("--grad-accum", type=int, default=None, help="micro-batches per optimizer step")
    o.add_argument(
        "--activation-checkpointing",
        choices=("on", "off"),
        default=None,
        help="recompute activations in the update (update.activation_checkpointing)",
    )
    o.add_argument(
        "--pipeline-groups", type=int, default=None, help="env worker groups (1: lock-step)"
    )


def _machine(ns: argparse.Namespace) -> MachineSpec:
    """The detected machine, with any of its numbers replaced by the flags."""
    from ript_core.plan import GB, MachineSpec, detect_machine

    fake = (ns.device, ns.device_memory_gb, ns.device_free_gb, ns.cpu_ram_gb, ns.cores)
    if all(v is None for v in fake):
        return detect_machine()
    device = ns.device or ("cuda" if ns.device_memory_gb is not None else None)
    need_detect = (
        ns.cores is None
        or ns.cpu_ram_gb is None
        or (device == "cuda" and ns.device_memory_gb is None)
    )
    here = detect_machine() if need_detect or device is None else None
    device = device or here.device
    cores = ns.cores if ns.cores is not None else here.cpu_cores
    if ns.cpu_ram_gb is not None:
        ram = free_ram = int(ns.cpu_ram_gb * GB)
    else:
        ram, free_ram = here.cpu_ram_bytes, here.host_free_bytes
    if device == "cpu":
        return MachineSpec("cpu", ram, free_ram, ram, cores, free_ram, name="cpu (given)")
    if ns.device_memory_gb is not None:
        total = int(ns.device_memory_gb * GB)
        free = total
    elif here is not None and here.device == "cuda":
        total, free = here.device_total_bytes, here.device_free_bytes
    else:
        raise ValueError("no GPU here: pass --device-memory-gb to plan for a GPU machine")
    if ns.device_free_gb is not None:
        free = int(ns.device_free_gb * GB)
    return MachineSpec("cuda", total, free, ram, cores, free_ram, name="cuda (given)")


def _policy(ns: argparse.Namespace, machine: MachineSpec) -> PolicyFootprint:
    from ript_core.plan import PolicyFootprint

    dtype = ns.dtype or ("bfloat16" if machine.device == "cuda" else "float32")
    dtype_bytes = 2 if dtype == "bfloat16" else 4
    if ns.preset == "pi0":
        fp = PolicyFootprint.pi0(dtype_bytes=dtype_bytes, n_cameras=ns.cameras or 3)
    else:
        fp = PolicyFootprint.pi0_tiny(dtype_bytes=dtype_bytes)
        if ns.cameras:
            fp = attrs.evolve(fp, n_cameras=ns.cameras)
    if ns.logp_steps is not None:
        fp = attrs.evolve(fp, logp_steps=ns.logp_steps)
    fp = attrs.evolve(fp, optimizer_moments=ns.optim_moments)
    return fp.for_strategy(ns.strategy, lora=_lora(ns))


def _lora(ns: argparse.Namespace) -> LoraSettings:
    from ript_core.policy.config import LoraSettings

    targets = [t.strip() for t in ns.lora_targets.split(",") if t.strip()]
    return LoraSettings(rank=ns.lora_rank, alpha=float(ns.lora_rank), targets=targets)


def _backend(ns: argparse.Namespace) -> BackendFootprint:
    from ript_core.plan import GB

    b = get_registry().footprint(ns.backend_footprint)
    if ns.env_ram_gb is not None:
        b = attrs.evolve(b, name=f"{b.name} (given)", env_ram_bytes=int(ns.env_ram_gb * GB))
    if ns.env_step_ms is not None:
        b = attrs.evolve(b, env_step_seconds=ns.env_step_ms / 1000)
    return b


def _overrides(ns: argparse.Namespace) -> dict[str, int | bool]:
    out: dict[str, int | bool] = {}
    for key in (
        "n_env_workers",
        "inference_batch",
        "train_micro_batch",
        "grad_accum",
        "pipeline_groups",
    ):
        if getattr(ns, key) is not None:
            out[key] = getattr(ns, key)
    if ns.activation_checkpointing is not None:
        out["activation_checkpointing"] = ns.activation_checkpointing == "on"
    return out


def _inference_cost(ns: argparse.Namespace, machine: MachineSpec, policy: PolicyFootprint):
    """The estimate, with any number the user measured put in its place."""
    from ript_core.plan import InferenceCost

    if ns.policy_call_ms is None and ns.policy_sample_ms is None:
        return None
    est = InferenceCost.estimate(policy, machine)
    return InferenceCost(
        est.call_s if ns.policy_call_ms is None else ns.policy_call_ms / 1000,
        est.per_sample_s if ns.policy_sample_ms is None else ns.policy_sample_ms / 1000,
        source="given",
        bucketed=est.bucketed,
    )


def _plan(ns: argparse.Namespace, machine: MachineSpec):
    from ript_core.plan import plan

    policy = _policy(ns, machine)
    return policy, plan(
        machine,
        policy,
        _backend(ns),
        rollouts_per_update=ns.rollouts_per_update,
        train_batch=ns.train_batch,
        overrides=_overrides(ns),
        replan_every=ns.replan_every,
        inference_cost=_inference_cost(ns, machine, policy),
        episode_steps=ns.episode_steps,
    )


def _fixes(ns: argparse.Namespace, machine: MachineSpec) -> list[str]:
    """The flags (one change, then bf16 with another strategy) whose plan fits."""
    dtype = ns.dtype or ("bfloat16" if machine.device == "cuda" else "float32")
    changes: list[dict[str, str]] = []
    if dtype == "float32":
        changes.append({"dtype": "bfloat16"})
    if ns.optim_moments == "fp32":
        changes.append({"optim_moments": "8bit"})
    others = [s for s in ("lora", "expert", "full") if s != ns.strategy]
    changes += [{"strategy": s} for s in others]
    if dtype == "float32":
        changes += [{"dtype": "bfloat16", "strategy": s} for s in others]
    fixes = []
    for change in changes:
        _, alt = _plan(argparse.Namespace(**{**vars(ns), **change}), machine)
        if alt.fits:
            flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in change.items())
            fixes.append(f"{flags} (peak {_peak(alt)} of {_usable(alt)} usable)")
    return fixes


def _peak(p) -> str:
    from ript_core.plan import fmt_gb

    return fmt_gb(max(p.peak_bytes.values()))


def _usable(p) -> str:
    from ript_core.plan import fmt_gb

    return fmt_gb(p.usable_bytes)


@command("plan", "choose env workers, batch sizes, checkpointing and rollout schedule", _plan_args)
def cmd_plan(ns: argparse.Namespace) -> int:
    from ript_core.cli.plan_tables import print_plan, print_strategies, print_verdict
    from ript_core.plan import STRATEGY_PREFERENCE, strategy_costs

    machine = _machine(ns)
    policy, result = _plan(ns, machine)
    print_plan(result, machine, policy)
    if ns.strategy in STRATEGY_PREFERENCE:
        costs = strategy_costs(
            machine,
            policy,
            _backend(ns),
            rollouts_per_update=ns.rollouts_per_update,
            train_batch=ns.train_batch,
            replan_every=ns.replan_every,
            lora=_lora(ns),
        )
        print_strategies(costs, ns.strategy, result.recommended_strategy)
    if result.recommended_strategy is not None:
        console.print(
            f"recommendation: --strategy {result.recommended_strategy} "
            f"(policy.strategy: {result.recommended_strategy} in the training config)",
            highlight=False,
        )
    print_verdict(result, [] if result.fits else _fixes(ns, machine))
    return 0 if result.fits else 1
