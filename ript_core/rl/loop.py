"""LOOP: leave-one-out PPO, the update RIPT applies to each batch of groups.

Read top to bottom:

1. ``leave_one_out_advantages``: within a group of K rollouts of one context,
   rollout k's advantage is its reward minus the mean reward of the other
   K-1. Groups whose rewards are all equal have zero advantage everywhere and
   are dropped before they reach here (``is_informative``).
2. Every decision (policy chunk) of a rollout gets its rollout's advantage.
3. ``ppo_loss``: the clipped surrogate on the ratio of the chunk's flow
   log-prob under the current weights to the "old" one: recorded at sampling
   time, or (``update.old_log_prob``) recomputed before the first step with
   the update's own kernels -- in bf16 the sampler's and the update's
   matmuls have other shapes and round differently, so an unchanged policy
   would not have a ratio of exactly 1.
4. ``loop_update``: a few epochs over the decisions in shuffled micro-batches,
   gradients accumulated over the whole batch, summed across ranks, clipped,
   one AdamW step per mini-batch. A non-finite loss or gradient skips the
   step and leaves weights and optimizer state untouched.

Under FSDP (``update.distributed="fsdp"``, :mod:`ript_core.rl.sharding`) the
sharded parameters' gradients are summed inside backward; every rank then
runs the same number of micro-batches (the short ones re-score a decision
with zero weight) because each FSDP forward and backward is a collective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
import torch
import torch.distributed as dist

from ript_core.rl.commtime import CommTimer
from ript_core.rl.optimizer import collect_grads
from ript_core.rl.sharding import DistributedMode, clip_grad_norm, is_sharded


def leave_one_out_advantages(rewards: np.ndarray) -> np.ndarray:
    """``rewards [G, K]`` -> advantages ``[G, K]``: ``R_k - mean_{j != k} R_j``."""
    rewards = np.asarray(rewards, dtype=np.float64)
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError("leave-one-out needs at least 2 rollouts per context")
    others = (rewards.sum(-1, keepdims=True) - rewards) / (k - 1)
    return rewards - others


def is_informative(rewards: Sequence[float]) -> bool:
    """A group whose rewards are all equal has all-zero advantages: no gradient."""
    return len(set(float(r) for r in rewards)) > 1


def ppo_loss(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    clip: float,
    reduction_count: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate ``-min(r A, clip(r, 1-e, 1+e) A)``.

    Summed and divided by ``reduction_count`` (the number of decisions in the
    whole batch, across micro-batches and ranks) so that accumulated
    micro-batch gradients equal the full-batch mean's gradient exactly.
    """
    ratio = torch.exp(logp_new - logp_old)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    per_sample = -torch.minimum(unclipped, clipped)
    n = reduction_count if reduction_count is not None else per_sample.numel()
    with torch.no_grad():
        stats = {
            "ratio_mean": ratio.mean().item(),
            "clip_frac": ((ratio - 1.0).abs() > clip).float().mean().item(),
            "approx_kl": (ratio - 1.0 - torch.log(ratio)).mean().item(),
        }
    return per_sample.sum() / n, stats


@attrs.frozen
class Decision:
    """One policy chunk to re-score: what the policy saw and sampled, and its advantage."""

    policy_input: Any
    record: dict[str, Any]
    advantage: float


@attrs.define
class UpdateConfig:
    ppo_epochs: int = 1
    clip: float = 0.2
    micro_batch: int | None = None  # None: the parallel planner's choice
    mini_batches: int = 1  # optimizer steps per epoch
    max_grad_norm: float = 1.0
    normalize_advantages: bool = False
    # how gradients cross ranks under torchrun: "ddp" replicates the policy and
    # all-reduces; "fsdp" shards the big layers' weights, gradients and AdamW
    # state; "auto" picks fsdp when the replicated plan does not fit a device
    distributed: DistributedMode = "ddp"
    # time the gradient collectives (ript_core.rl.commtime; the trainer logs
    # time/update_comm_*): synchronises CUDA around the all-reduce, so it is
    # for benchmarks, off by default
    time_comm: bool = False
    # recompute each layer's activations in backward instead of storing them
    # (ript_core.policy.activation_checkpointing): "on" lets the planner size a bigger
    # micro-batch with it; "auto" turns it on when the plan needs it
    # (docs/planner.md); "off" never
    activation_checkpointing: str = "auto"
    # the PPO ratio's "old" log-prob: "rollout" takes the sampler's record;
    # "recompute" scores every decision once more before the first step, with
    # the update's kernels and micro-batch (one extra forward, no backward);
    # "auto": recompute when the policy does not run in float32 (in bf16 the
    # sampler's and the update's kernels round differently: up to 1.1 nats
    # on a ~490-nat chunk log-prob on the H100, docs/benchmarks.md)
    old_log_prob: str = attrs.field(
        default="auto", validator=attrs.validators.in_(("auto", "rollout", "recompute"))
    )
    # run the update's forward and backward through compiled layers
    # (ript_core.policy.fast.compiled_layers): +14 % samples/s at micro-batch 16 on
    # the H100 without checkpointing, nothing with it. Compiles once (minutes
    # at full size): the trainer pads every micro-batch to the planned size
    # (fixed_size). Not with fsdp.
    compile: bool = False


class NonFiniteError(RuntimeError):
    pass


def _all_reduce_grads(params: list[torch.nn.Parameter], timer: CommTimer | None = None) -> None:
    """Sum gradients over ranks (what DDP does; done by hand so that the policy's
    own ``log_prob`` method, not ``forward``, can drive the backward pass).

    A parameter that got no gradient on any rank keeps ``grad = None`` (so
    AdamW skips it exactly as it would in one process); one that got a
    gradient on some rank gets zeros on the others before the sum.

    With a ``timer``: a barrier first (timed as ``wait``: slower ranks still in
    backward), then the reduce (timed as ``all_reduce``), CUDA synchronised.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    if timer is None:
        _sum_grads(params)
        return
    with timer.wall("wait"):
        dist.barrier()
    with timer.wall("all_reduce"):
        _sum_grads(params)


#: Gradient elements per all-reduce call (2**26 float32 = 256 MiB). One flat
#: copy of every gradient would be a second full set of gradients on each rank
#: (13 GB for full pi0's float32 masters), which the planner does not charge
#: and which only exists with N > 1 ranks (measured on 2 H100s: 78.0 GiB used
#: per GPU against 65.3 GiB for the same plan in one process).
ALL_REDUCE_BUCKET_NUMEL = 1 << 26


def _sum_grads(params: list[torch.nn.Parameter]) -> None:
    # FSDP already reduce-scattered the sharded ones during backward
    params = [p for p in params if not is_sharded(p)]
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    dist.all_reduce(has)
    live = [p for p, h in zip(params, has.tolist(), strict=True) if h > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket: list[torch.nn.Parameter] = []
    size = 0
    for p in live:
        if bucket and size + p.numel() > ALL_REDUCE_BUCKET_NUMEL:
            _sum_bucket(bucket)
            bucket, size = [], 0
        bucket.append(p)
        size += p.numel()
    if bucket:
        _sum_bucket(bucket)


def _sum_bucket(bucket: list[torch.nn.Parameter]) -> None:
    """All-reduce the gradients of ``bucket``: in place when it is one
    contiguous gradient, else through one flat copy of the bucket."""
    if len(bucket) == 1 and bucket[0].grad.is_contiguous():
        dist.all_reduce(bucket[0].grad)
        return
    flat = torch.cat([p.grad.reshape(-1) for p in bucket])
    dist.all_reduce(flat)
    offset = 0
    for p in bucket:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()


LogProb = Callable[[Sequence[Any], Sequence[dict[str, Any]]], torch.Tensor]


def fixed_size(log_prob: LogProb, rows: int) -> LogProb:
    """``log_prob`` that always sees ``rows`` rows: a shorter batch (an
    update's last micro-batch holds whatever decisions are left) is filled up
    with copies of its first row, and only the real rows' log-probs come back
    (the copies get no gradient). For compiled layers (``update.compile``),
    where every new batch size recompiled every layer's forward and backward:
    ~50 s on the H100 each time (docs/benchmarks.md). Rows do not interact in
    ``log_prob``, so the real rows' values are those of an unpadded call up to
    the kernels' rounding."""

    def call(inputs: Sequence[Any], records: Sequence[dict[str, Any]]) -> torch.Tensor:
        n = len(inputs)
        if n == 0 or n >= rows:
            return log_prob(inputs, records)
        fill = rows - n
        return log_prob([*inputs, *[inputs[0]] * fill], [*records, *[records[0]] * fill])[:n]

    return call


def _rescore(
    decisions: Sequence[Decision],
    old_log_prob: LogProb,
    micro_batch: int | None,
    pad: Decision | None,
) -> torch.Tensor:
    """``[N]`` float32 log-probs of every decision, in micro-batches of the
    update's size (same shapes, same kernels as the gradient passes)."""
    micro = micro_batch or max(len(decisions), 1)
    parts = []
    for start in range(0, len(decisions), micro):
        batch = decisions[start : start + micro]
        logp = old_log_prob([d.policy_input for d in batch], [d.record for d in batch])
        parts.append(logp.detach().float().cpu())
    if pad is not None:  # FSDP: every rank runs as many forwards (collectives)
        n = -(-len(decisions) // micro)
        for _ in range(_global_count(n, dist.ReduceOp.MAX) - n):
            old_log_prob([pad.policy_input], [pad.record])
    return torch.cat(parts) if parts else torch.zeros(0)


def _global_count(n: int, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> int:
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor([n], dtype=torch.long)
        dist.all_reduce(t, op=op)
        return int(t.item())
    return n


def _padding_decision(decisions: Sequence[Decision]) -> Decision | None:
    """A decision for zero-weight padding micro-batches (FSDP): a local one, or,
    when some rank has none at all, one borrowed from another rank (collective)."""
    if _global_count(len(decisions), dist.ReduceOp.MIN) > 0:
        return decisions[0] if decisions else None
    theirs: list[Decision | None] = [None] * dist.get_world_size()
    dist.all_gather_object(theirs, decisions[0] if decisions else None)
    return next((d for d in theirs if d is not None), None)


def loop_update(
    decisions: Sequence[Decision],
    log_prob: LogProb,
    params: list[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    cfg: UpdateConfig,
    rng: np.random.Generator,
    extra_loss: Callable[[], torch.Tensor] | None = None,
    comm_timer: CommTimer | None = None,
    old_log_prob: LogProb | None = None,
) -> dict[str, float]:
    """Run the PPO epochs over ``decisions``; returns averaged metrics.

    ``log_prob(inputs, records)`` recomputes the decisions' chunk log-probs
    with gradients. ``old_log_prob`` (same signature, no gradients): the
    ratio's denominator is recomputed with it before the first step instead
    of read from ``record["log_prob"]``. ``extra_loss`` (e.g. a BC term) is added once per
    optimizer step. ``comm_timer`` (``cfg.time_comm``) times the gradient
    all-reduce; the caller reads it.
    """
    adv = np.array([d.advantage for d in decisions], dtype=np.float32)
    if cfg.normalize_advantages and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    logs: dict[str, list[float]] = {}
    skipped = 0
    steps = 0
    sharded = any(is_sharded(p) for p in params)
    pad = _padding_decision(decisions) if sharded else None
    old = torch.tensor([float(d.record["log_prob"]) for d in decisions])
    if old_log_prob is not None:  # every rank: FSDP pads its forwards in there
        recorded, old = old, _rescore(decisions, old_log_prob, cfg.micro_batch, pad)
        # how far the sampler's arithmetic is from the update's
        shift = float((old - recorded).abs().mean()) if decisions else 0.0
        logs["old_log_prob_shift"] = [shift]
    for _epoch in range(cfg.ppo_epochs):
        order = rng.permutation(len(decisions))
        for mini in np.array_split(order, cfg.mini_batches):
            # every rank takes part in the same collectives, even with no local data
            total = _global_count(len(mini))
            if total == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            micro = cfg.micro_batch or max(len(mini), 1)
            n_micro = -(-len(mini) // micro)
            # FSDP: the collectives inside forward/backward must pair up across
            # ranks; agree on the longest rank's count before the first forward
            n_pad = _global_count(n_micro, dist.ReduceOp.MAX) - n_micro if sharded else 0
            for start in range(0, len(mini), micro):
                idx = mini[start : start + micro]
                batch = [decisions[i] for i in idx]
                logp_new = log_prob([d.policy_input for d in batch], [d.record for d in batch])
                logp_old = old[torch.from_numpy(idx)]
                loss, stats = ppo_loss(
                    logp_new.float().cpu(), logp_old, torch.from_numpy(adv[idx]), cfg.clip, total
                )
                loss.backward()
                loss_sum += loss.item()
                for k, v in stats.items():
                    logs.setdefault(k, []).append(v)
            for _ in range(n_pad):  # zero-weight micro-batches: same collectives, no gradient
                assert pad is not None  # total > 0: some rank has a decision
                logp = log_prob([pad.policy_input], [pad.record])
                (logp.float().cpu().sum() * 0.0).backward()
            if extra_loss is not None:
                bc = extra_loss()
                bc.backward()
                logs.setdefault("bc_loss", []).append(bc.item())
            collect_grads(optimizer)  # bf16 -> float32 master gradients (rl/optimizer.py)
            _all_reduce_grads(params, comm_timer)
            if sharded:
                grad_norm = clip_grad_norm(params, cfg.max_grad_norm)
            else:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if not (np.isfinite(loss_sum) and torch.isfinite(grad_norm)):
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                continue
            optimizer.step()
            steps += 1
            logs.setdefault("loss", []).append(loss_sum)
            logs.setdefault("grad_norm", []).append(float(grad_norm))
    out = {k: float(np.mean(v)) for k, v in logs.items()}
    out["optimizer_steps"] = steps
    out["skipped_steps"] = skipped
    return out
