"""``plan()``: env workers, batch sizes, checkpointing and the rollout schedule of a run.

RL post-training of a 3.5B-parameter PI0 runs out of memory on 24–48 GB
GPUs when every env holds a model copy or batches are sized by hand.
``plan()`` turns a few plain numbers — the policy's parameter counts and
architecture, the machine's memory and cores, the backend's per-env RAM —
into a :class:`ParallelPlan` with a predicted peak memory per phase and the
reasoning in plain English, so that a plan that does not fit is refused
*before* a run, with what would fit.

The run it plans for: env worker processes each hold ONE env in CPU RAM and
never a model; the main process holds the single policy on the device and
runs one batched inference over all live envs (rollout phase), then the
RIPT update (update phase). Each decision is one function below that
returns its value and the reasons it prints (docs/planner.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from ript_core.envs.spec import BackendFootprint
from ript_core.plan import phases
from ript_core.plan.cost import (
    InferenceCost,
    grad_bytes,
    kv_cache_bytes,
    model_bytes,
    optimizer_state_bytes,
    optimizer_state_bytes_per_trainable,
    rollout_activation_bytes,
    update_activation_bytes,
)
from ript_core.plan.footprint import PolicyFootprint, Strategy
from ript_core.plan.machine import (
    HOST_FIXED_ALLOWANCE,
    MARGIN_FRACTION,
    MachineSpec,
    core_limit,
    fixed_allowance,
    needed_device_total,
    usable_device_bytes,
    usable_host_bytes,
)
from ript_core.plan.parallel_plan import PLAN_FIELDS, ParallelPlan
from ript_core.plan.phases import PhaseBytes, largest_fitting, min_peak, phase_bytes
from ript_core.plan.schedule import PIPELINE_MIN_GAIN, PipelinePlan, choose_pipeline
from ript_core.plan.strategy import recommend_strategy
from ript_core.plan.units import GB, fmt_count, fmt_duration, fmt_gb

#: Below this micro-batch the update is launch-bound on a GPU: prefer turning
#: activation checkpointing on (≈ +33 % compute) to reach it.
MIN_EFFICIENT_MICRO_BATCH = 8


@attrs.frozen
class _Request:
    """What every decision reads: the inputs of :func:`plan` and the budgets."""

    machine: MachineSpec
    policy: PolicyFootprint
    backend: BackendFootprint
    rollouts_per_update: int
    train_batch: int
    overrides: dict[str, Any]
    usable: int
    host_usable: int

    def fits_rollout(self, n_env: int, batch: int) -> bool:
        peaks = phase_bytes(self.machine, self.policy, self.backend, n_env, batch, 1, True)
        return peaks.peaks()["rollout"] <= self.usable

    def fits_update(
        self, n_env: int, micro: int, ckpt: bool, policy: PolicyFootprint | None = None
    ) -> bool:
        fp = self.policy if policy is None else policy
        peaks = phase_bytes(self.machine, fp, self.backend, n_env, 1, micro, ckpt)
        return peaks.peaks()["update"] <= self.usable


def plan(
    machine: MachineSpec,
    policy: PolicyFootprint,
    backend: BackendFootprint,
    *,
    rollouts_per_update: int,
    train_batch: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    replan_every: int = 5,
    inference_cost: InferenceCost | None = None,
    episode_steps: int | None = None,
) -> ParallelPlan:
    """Choose env workers, batch sizes, checkpointing and the rollout schedule.

    ``train_batch`` is the number of samples (chunks) per optimizer step;
    default ``rollouts_per_update``. ``overrides`` maps any of
    :data:`PLAN_FIELDS` to the user's value: it wins, the dependent fields
    are re-derived around it, and the plan reports when it does not fit.
    ``replan_every`` (env steps per chunk), ``inference_cost`` (default:
    :meth:`InferenceCost.estimate`) and, when known, ``episode_steps`` (the
    ramp of short episodes counts) decide ``pipeline_groups``.
    """
    req = _request(machine, policy, backend, rollouts_per_update, train_batch, overrides)
    reasons = [_budget_reason(req), _model_reason(policy)]
    n_env, why = _env_workers(req)
    reasons += why
    inf, why = _inference_batch(req, n_env)
    reasons += why
    cost = inference_cost or InferenceCost.estimate(policy, machine)
    pipe, why = _schedule(req, n_env, inf, cost, replan_every, episode_steps)
    reasons += why
    (ckpt, auto_micro), why = _checkpointing(req, n_env)
    reasons += why
    (micro, accum), why = _micro_batch(req, auto_micro)
    reasons += why
    (phase, fits, recommended), why = _verdict(req, n_env, inf, micro, ckpt)
    reasons += why
    return ParallelPlan(
        n_env_workers=n_env,
        inference_batch=inf,
        train_micro_batch=micro,
        grad_accum=accum,
        activation_checkpointing=ckpt,
        train_batch=req.train_batch,
        peak_bytes=phase.peaks(),
        breakdown={"rollout": phase.rollout, "update": phase.update},
        usable_bytes=req.usable,
        host_bytes=n_env * backend.env_ram_bytes,
        host_usable_bytes=req.host_usable,
        fits=fits,
        reasons=reasons,
        strategy=policy.strategy,
        overridden=tuple(k for k in PLAN_FIELDS if k in req.overrides),
        pipeline=pipe,
        recommended_strategy=recommended,
    )


def _request(
    machine: MachineSpec,
    policy: PolicyFootprint,
    backend: BackendFootprint,
    rollouts_per_update: int,
    train_batch: int | None,
    overrides: Mapping[str, Any] | None,
) -> _Request:
    """The checked inputs; a bad override or batch size raises ``ValueError``."""
    if rollouts_per_update < 1:
        raise ValueError(f"rollouts_per_update must be >= 1, got {rollouts_per_update}")
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(PLAN_FIELDS)
    if unknown:
        raise ValueError(f"unknown plan override(s) {sorted(unknown)}: valid are {PLAN_FIELDS}")
    for key, value in overrides.items():
        if key != "activation_checkpointing" and (not isinstance(value, int) or value < 1):
            raise ValueError(f"override {key} must be an integer >= 1, got {value!r}")
    train_batch = rollouts_per_update if train_batch is None else train_batch
    if train_batch < 1:
        raise ValueError(f"train_batch must be >= 1, got {train_batch}")
    return _Request(
        machine,
        policy,
        backend,
        rollouts_per_update,
        train_batch,
        overrides,
        usable_device_bytes(machine),
        usable_host_bytes(machine),
    )


def _budget_reason(req: _Request) -> str:
    m = req.machine
    dev = "GPU" if m.device == "cuda" else "CPU RAM (model and env workers share it)"
    return (
        f"budget: {fmt_gb(req.usable)} usable of {fmt_gb(m.device_total_bytes)} {dev} "
        f"(free {fmt_gb(m.device_free_bytes)}; {MARGIN_FRACTION:.0%} margin + "
        f"{fmt_gb(fixed_allowance(m))} fixed allowance for "
        f"{'CUDA context/allocator' if m.device == 'cuda' else 'OS and interpreter'})"
    )


def _model_reason(policy: PolicyFootprint) -> str:
    moments = "8-bit" if policy.optimizer_moments == "8bit" else "fp32"
    state_b = f"{optimizer_state_bytes_per_trainable(policy):.3g} B"
    precision = (
        f"bf16 weights + fp32 master copy + {moments} AdamW moments ({state_b} per trainable param)"
        if policy.dtype_bytes == 2
        else f"fp32 weights + {moments} AdamW moments ({state_b} per trainable param)"
    )
    return (
        f"model: {policy.name}, {fmt_count(policy.n_params)} params in {policy.dtype_name} = "
        f"{fmt_gb(model_bytes(policy))}, held once by the main process (env workers hold no "
        f"model copy); strategy {policy.strategy}: {fmt_count(policy.n_trainable)} trainable, "
        f"{precision} = {fmt_gb(optimizer_state_bytes(policy))} kept across phases, + "
        f"{fmt_gb(grad_bytes(policy))} fp32 gradients during the update"
    )


def _env_workers(req: _Request) -> tuple[int, list[str]]:
    """As many env workers as the cores keep busy and the RAM holds, at most
    one per rollout of an update."""
    m, backend, rollouts = req.machine, req.backend, req.rollouts_per_update
    on_cpu = m.device == "cpu"
    by_cores = core_limit(m.cpu_cores, backend.cores_per_env)
    min_model = min_peak(m, req.policy, backend) - (backend.env_ram_bytes if on_cpu else 0)
    ram_pool = (req.usable - min_model) if on_cpu else req.host_usable
    by_ram = max(ram_pool // backend.env_ram_bytes, 0)
    auto_env = max(min(by_cores, by_ram, rollouts), 1)
    limits = {"cores": by_cores, "RAM": by_ram, "rollouts per update": rollouts}
    binding = min(limits, key=lambda k: limits[k])
    n_env = req.overrides.get("n_env_workers", auto_env)
    core_note = (
        f"{m.cpu_cores} cores − 1 for the main process"
        if m.cpu_cores > 2
        else f"{m.cpu_cores} cores (too few to reserve one for the main process)"
    )
    reasons = [
        f"env workers: {auto_env} = min(cores: {by_cores} [{core_note}, "
        f"{backend.cores_per_env:g} core per env], RAM: {by_ram} [{backend.name} env ≈ "
        f"{fmt_gb(backend.env_ram_bytes)} each, "
        + (
            f"{fmt_gb(ram_pool)} {'left beside the model' if on_cpu else 'host RAM usable'}"
            if ram_pool > 0
            else f"none left: the model alone is {fmt_gb(-ram_pool)} over the budget"
        )
        + f"], rollouts per update: {rollouts}); bound by {binding}"
        + (
            " — no room for even one env: the plan below keeps 1 to show the rest"
            if by_ram < 1
            else ""
        )
    ]
    steps_per_s = n_env / backend.env_step_seconds
    unread = backend.unread_step_seconds
    reasons.append(
        f"env stepping: {n_env} workers × 1/{backend.env_step_seconds * 1e3:.3g} ms ≈ "
        f"{steps_per_s:,.0f} rendered env steps/s"
        + ("" if unread is None else f" (a step with its render skipped: {unread * 1e3:.3g} ms)")
        + f"; {rollouts} rollouts run in {math.ceil(rollouts / n_env)} wave(s)"
    )
    if "n_env_workers" in req.overrides:
        reasons.append(f"override: n_env_workers = {n_env} (planner's choice: {auto_env})")
        if n_env > rollouts:
            reasons.append(
                f"note: {n_env} workers > {rollouts} rollouts per update: "
                f"{n_env - rollouts} stay idle"
            )
        if n_env > by_cores:
            reasons.append(f"note: {n_env} workers on {by_cores} spare cores oversubscribe the CPU")
    return n_env, reasons


def _inference_batch(req: _Request, n_env: int) -> tuple[int, list[str]]:
    """One batched forward over all live envs, or the largest batch that fits."""
    policy = req.policy
    auto_inf = largest_fitting(n_env, lambda b: req.fits_rollout(n_env, b))
    inf = req.overrides.get("inference_batch", max(auto_inf, 1))
    per_sample = kv_cache_bytes(policy) + rollout_activation_bytes(policy, 1)
    if auto_inf == n_env:
        reasons = [
            f"inference batch {auto_inf}: one batched forward over all {n_env} live envs "
            f"(KV cache {fmt_gb(kv_cache_bytes(policy))} per sample for "
            f"{policy.prefix_tokens} prefix tokens; ≈ {fmt_gb(per_sample)} per sample in all)"
        ]
    elif auto_inf > 0:
        reasons = [
            f"inference batch {auto_inf}: all {n_env} live envs at once would not fit "
            f"(≈ {fmt_gb(per_sample)} per sample); their observations are split into "
            f"{math.ceil(n_env / auto_inf)} forwards"
        ]
    else:
        reasons = [
            f"inference batch: even one sample does not fit beside the model and the "
            f"optimizer state (≈ {fmt_gb(per_sample)} per sample)"
        ]
    if "inference_batch" in req.overrides:
        reasons.append(f"override: inference_batch = {inf} (planner's choice: {auto_inf})")
        if inf > n_env:
            reasons.append(
                f"note: inference batch {inf} > {n_env} live envs; batches hold at most {n_env}"
            )
    return inf, reasons


def _schedule(
    req: _Request,
    n_env: int,
    inf: int,
    cost: InferenceCost,
    replan_every: int,
    episode_steps: int | None,
) -> tuple[PipelinePlan, list[str]]:
    """How many worker groups overlap the policy (:mod:`ript_core.plan.schedule`)."""
    chunk_s = req.backend.chunk_seconds(replan_every)
    decisions = None if episode_steps is None else max(1, math.ceil(episode_steps / replan_every))
    kw: dict[str, Any] = dict(inference_batch=inf, replan_every=replan_every, decisions=decisions)
    pipe = choose_pipeline(
        n_env, chunk_s, cost, override=req.overrides.get("pipeline_groups"), **kw
    )
    reasons = [
        f"rollout schedule: one chunk of {replan_every} env steps ≈ {chunk_s * 1e3:.4g} ms per "
        f"env; a policy call ≈ {fmt_duration(cost.call_s)} + {fmt_duration(cost.per_sample_s)} "
        f"× batch ({cost.source}); "
        + "; ".join(
            f"G={o.groups}: period {fmt_duration(o.period_s)}, policy busy {o.policy_util:.0%}, "
            f"envs busy {o.env_util:.0%}"
            for o in pipe.options[: min(len(pipe.options), 4)]
        )
    ]
    if pipe.overridden:
        auto = choose_pipeline(n_env, chunk_s, cost, **kw).groups
        reasons.append(f"override: pipeline_groups = {pipe.groups} (planner's choice: {auto})")
    elif pipe.groups == 1:
        reasons.append(
            f"pipeline_groups 1 (lock-step): no group count shortens the "
            f"{'period' if decisions is None else f'wave of {decisions}-decision episodes'} "
            f"by {PIPELINE_MIN_GAIN:.0%} or more"
        )
    else:
        reasons.append(
            f"pipeline_groups {pipe.groups}: groups of {max(pipe.chosen.group_sizes)} envs step "
            f"while the policy serves the others; predicted {pipe.speedup:.2f}× the env steps/s "
            f"of lock-step ({pipe.chosen.steps_per_s:,.0f} vs {pipe.lockstep.steps_per_s:,.0f})"
        )
    return pipe, reasons


def _checkpointing(req: _Request, n_env: int) -> tuple[tuple[bool, int], list[str]]:
    """Activation checkpointing on only when the update cannot otherwise fit
    a micro-batch of :data:`MIN_EFFICIENT_MICRO_BATCH`; returns it and the
    largest micro-batch that fits with that choice."""
    policy, train_batch = req.policy, req.train_batch
    want = min(train_batch, MIN_EFFICIENT_MICRO_BATCH)
    no_ckpt = largest_fitting(train_batch, lambda m: req.fits_update(n_env, m, False))
    with_ckpt = largest_fitting(train_batch, lambda m: req.fits_update(n_env, m, True))
    act1 = update_activation_bytes(policy, 1, False)
    act1c = update_activation_bytes(policy, 1, True)
    if "activation_checkpointing" in req.overrides:
        ckpt = bool(req.overrides["activation_checkpointing"])
        return (ckpt, with_ckpt if ckpt else no_ckpt), [
            f"override: activation_checkpointing = {'on' if ckpt else 'off'} "
            f"(activations {fmt_gb(act1c if ckpt else act1)} per sample)"
        ]
    # read through the module: tests switch it there
    if not phases.ACTIVATION_CHECKPOINTING_AVAILABLE:
        return (False, no_ckpt), [
            f"activation checkpointing off (not chosen automatically until its memory model is "
            f"validated on a GPU): micro-batch {no_ckpt} fits without it ({fmt_gb(act1)} of "
            f"activations per sample; with it {fmt_gb(act1c)} per sample and micro-batch "
            f"{with_ckpt} would fit: set update.activation_checkpointing: on)"
        ]
    if no_ckpt >= want:
        return (False, no_ckpt), [
            f"activation checkpointing off: without it a micro-batch of {no_ckpt} fits "
            f"({fmt_gb(act1)} of activations per sample), ≥ the {want} wanted; "
            "checkpointing would cost ≈ 33 % more compute for nothing"
        ]
    reasons = [
        f"activation checkpointing on: without it "
        f"{f'only a micro-batch of {no_ckpt} fits' if no_ckpt else 'not even a micro-batch of 1 fits'} "
        f"({fmt_gb(act1)} of activations per sample); with it {fmt_gb(act1c)} per sample "
        f"and {f'micro-batch {with_ckpt}' if with_ckpt else 'still not even a micro-batch of 1'}"
    ]
    if policy.optimizer_moments == "fp32" and policy.n_trainable:
        # recomputation costs ≈ 1/3 more compute; 8-bit moments may make room instead
        lean = attrs.evolve(policy, optimizer_moments="8bit")
        lean_micro = largest_fitting(train_batch, lambda m: req.fits_update(n_env, m, False, lean))
        if lean_micro >= want:
            freed = optimizer_state_bytes(policy) - optimizer_state_bytes(lean)
            reasons.append(
                f"note: optim.moments: 8bit (bitsandbytes, pip install 'ript-core[bnb]') "
                f"would free {fmt_gb(freed)} of AdamW state: micro-batch {lean_micro} "
                "without checkpointing"
            )
    return (True, with_ckpt), reasons


def _micro_batch(req: _Request, auto_micro: int) -> tuple[tuple[int, int], list[str]]:
    """Micro-batch and gradient accumulation steps of one optimizer step."""
    overrides, train_batch = req.overrides, req.train_batch
    if "train_micro_batch" in overrides:
        micro = overrides["train_micro_batch"]
        accum = overrides.get("grad_accum", math.ceil(train_batch / micro))
    elif "grad_accum" in overrides:
        accum = overrides["grad_accum"]
        micro = math.ceil(train_batch / accum)
    else:
        micro = max(auto_micro, 1)
        accum = math.ceil(train_batch / micro)
        micro = math.ceil(train_batch / accum)  # balance: same steps, smaller peak
    reasons = [
        f"training: {train_batch} samples per optimizer step in {accum} gradient accumulation "
        f"step(s) of micro-batch ≤ {micro}"
        + (
            " (not even a micro-batch of 1 fits: see 'does not fit')"
            if auto_micro == 0
            else f" (largest fitting micro-batch: {auto_micro})"
            if auto_micro != micro
            else ""
        )
    ]
    for key in ("train_micro_batch", "grad_accum"):
        if key in overrides:
            reasons.append(f"override: {key} = {overrides[key]}")
    if micro * accum != train_batch and ({"train_micro_batch", "grad_accum"} & set(overrides)):
        reasons.append(
            f"note: micro-batch {micro} × accumulation {accum} = {micro * accum} samples "
            f"per optimizer step, not the {train_batch} asked"
        )
    return (micro, accum), reasons


def _verdict(
    req: _Request, n_env: int, inf: int, micro: int, ckpt: bool
) -> tuple[tuple[PhaseBytes, bool, Strategy | None], list[str]]:
    """Whether the chosen settings fit, and if not what would and which strategy."""
    m, usable = req.machine, req.usable
    phase = phase_bytes(m, req.policy, req.backend, n_env, inf, micro, ckpt)
    peaks = phase.peaks()
    fits, reasons = True, []
    for name, peak in peaks.items():
        if peak > usable:
            fits = False
            what = "overridden plan" if req.overrides else "smallest plan"
            reasons.append(
                f"does not fit: {name} phase of the {what} needs {fmt_gb(peak)} > "
                f"{fmt_gb(usable)} usable (over by {fmt_gb(peak - usable)})"
            )
    host = n_env * req.backend.env_ram_bytes
    if m.device == "cuda" and host > req.host_usable:
        fits = False
        reasons.append(
            f"does not fit: {n_env} env workers need {fmt_gb(host)} "
            f"of CPU RAM > {fmt_gb(req.host_usable)} usable"
        )
    if fits:
        headroom = usable - max(peaks.values())
        reasons.append(
            f"fits: peak {fmt_gb(max(peaks.values()))} (rollout {fmt_gb(peaks['rollout'])}, "
            f"update {fmt_gb(peaks['update'])}) leaves {fmt_gb(headroom)} of the usable budget"
        )
    recommended = None
    if not fits:
        reasons.extend(_what_would_fit(req))
        rec = recommend_strategy(m, req.policy, req.backend)
        if rec is not None and rec[0] != req.policy.strategy:
            recommended = rec[0]
            reasons.append(rec[1])
    return (phase, fits, recommended), reasons


def _show(value: int | bool) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def _what_would_fit(req: _Request) -> list[str]:
    """Advice when a plan does not fit: the planner's own choice, cheaper
    strategies, bf16, or the device size that would hold the smallest plan."""
    machine, policy, backend = req.machine, req.policy, req.backend
    out: list[str] = []
    if req.overrides:
        auto = plan(machine, policy, backend, rollouts_per_update=req.rollouts_per_update)
        if auto.fits:
            s = auto.settings()
            return [
                "would fit: drop the overrides; the planner's choice is "
                + ", ".join(f"{k}={_show(v)}" for k, v in s.items())
            ]
    smallest = min_peak(machine, policy, backend)
    if smallest > req.usable:
        if policy.strategy in ("full", "expert", "lora"):
            for alt in ("expert", "lora"):
                if alt == policy.strategy:
                    continue
                alt_fp = policy.for_strategy(alt)
                if min_peak(machine, alt_fp, backend) <= req.usable:
                    out.append(
                        f"would fit: use strategy {alt} ({fmt_count(alt_fp.n_trainable)} trainable; "
                        f"smallest peak {fmt_gb(min_peak(machine, alt_fp, backend))})"
                    )
        if policy.dtype_bytes == 4:
            bf = attrs.evolve(policy, dtype_bytes=2)
            if min_peak(machine, bf, backend) <= req.usable:
                out.append("would fit: load the policy in bf16 (dtype bfloat16)")
        need = needed_device_total(machine, smallest)
        kind = "a GPU" if machine.device == "cuda" else "a machine (or a GPU)"
        out.append(
            f"would fit: {kind} with ≥ {math.ceil(need / GB)} GB for strategy "
            f"{policy.strategy} in {policy.dtype_name} (smallest plan peaks at {fmt_gb(smallest)})"
        )
    elif machine.device == "cuda":
        need = math.ceil(backend.env_ram_bytes / GB + HOST_FIXED_ALLOWANCE / GB)
        out.append(f"would fit: fewer env workers, or ≥ {need} GB of free CPU RAM")
    return out
