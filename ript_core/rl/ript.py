"""RIPT, top to bottom: what one training iteration computes.

1. :func:`collect_groups` draws contexts (task, init state) and rolls each out K
   times with SDE sampling (a *group*); a rollout's reward is 1 on success, else 0.
2. Dynamic sampling: a group whose K rewards are all equal has zero advantage
   everywhere and so no gradient (:func:`is_informative`); it is dropped and more
   contexts are drawn until ``ript.groups_per_iteration`` groups are kept or
   ``ript.max_sampling_rounds`` rounds ran.
3. :func:`leave_one_out_advantages`: rollout k's reward minus the mean reward of
   the other K-1 rollouts of its group.
4. :func:`flatten`: every decision (policy chunk) of a rollout gets its rollout's
   advantage; the update sees decisions, not episodes.
5. :func:`ppo_loss`: the clipped surrogate on the ratio of a chunk's flow log-prob
   under the current weights to the "old" one, recorded by the sampler or
   re-scored with the update's own kernels (:func:`old_log_probs`).
6. :func:`loop_update`: epochs of shuffled mini-batches, gradients accumulated over
   micro-batches, summed across ranks and clipped, one AdamW step per
   mini-batch; a non-finite loss or gradient (before or after clipping) skips the step.

The trainer around it (build, resume, checkpoints, logs): :mod:`ript_core.rl.trainer`;
what crosses ranks under torchrun: :mod:`ript_core.rl.distributed_update`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
import torch

from ript_core.rl import distributed_update as ranks
from ript_core.rl.actor import LogProb
from ript_core.rl.commtime import CommTimer
from ript_core.rl.config import RiptSection, UpdateConfig
from ript_core.rl.contexts import ContextSampler
from ript_core.rl.optimizer import collect_grads
from ript_core.rollout.runner import EpisodeRequest, Rollout, RolloutRunner

log = logging.getLogger(__name__)


@attrs.frozen
class Decision:
    """One policy chunk to re-score: what the policy saw and sampled, and its advantage."""

    policy_input: Any
    record: dict[str, Any]
    advantage: float


def episode_seed(*parts: int) -> int:
    """A seed from (run seed, rank, iteration, round, group, slot): reproducible
    whatever else ran before, so a resumed run draws what an uninterrupted one would."""
    return int(np.random.SeedSequence([abs(p) for p in parts]).generate_state(1)[0])


# -- 1-4: rollouts -> decisions ---------------------------------------------------------
def is_informative(rewards: Sequence[float]) -> bool:
    """A group whose rewards are all equal has all-zero advantages: no gradient."""
    return len(set(float(r) for r in rewards)) > 1


def leave_one_out_advantages(rewards: np.ndarray) -> np.ndarray:
    """``rewards [G, K]`` -> advantages ``[G, K]``: ``R_k - mean_{j != k} R_j``."""
    rewards = np.asarray(rewards, dtype=np.float64)
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError("leave-one-out needs at least 2 rollouts per context")
    others = (rewards.sum(-1, keepdims=True) - rewards) / (k - 1)
    return rewards - others


def flatten(group: Sequence[Rollout], advantages: Sequence[float]) -> list[Decision]:
    """Every decision of every rollout of a group, with its rollout's advantage."""
    return [
        Decision(step.policy_input, step.record, float(a))
        for rollout, a in zip(group, advantages, strict=True)
        for step in rollout.steps
    ]


def collect_groups(
    runner: RolloutRunner,
    sampler: ContextSampler,
    cfg: RiptSection,
    seed: Sequence[int],
    iteration: int,
) -> tuple[list[Decision], dict[str, float]]:
    """Dynamic rollout sampling: keep informative groups until the batch is full.

    ``seed`` (run seed, rank) and ``iteration`` fix every episode's seed.
    """
    k = cfg.group_size
    decisions: list[Decision] = []
    kept = dropped = rounds = 0
    successes = episodes = env_steps = discarded = 0
    rollout_metrics: dict[str, float] = {}
    env_metrics: dict[str, float] = {}  # the envs' own counts (info["metrics"]), summed
    while kept < cfg.groups_per_iteration and rounds < cfg.max_sampling_rounds:
        want = max(1, math.ceil((cfg.groups_per_iteration - kept) * cfg.oversample))
        contexts = sampler.sample(want)
        requests = [
            EpisodeRequest(
                episode_id=g * k + slot,
                backend=c.backend,
                task=c.task,
                init_state=c.init_state,
                seed=episode_seed(*seed, iteration, rounds, g, slot),
                group=g,
            )
            for g, c in enumerate(contexts)
            for slot in range(k)
        ]
        rollouts, stats = runner.run(requests)
        rollout_metrics = stats.as_metrics()
        env_steps += stats.env_steps
        discarded += stats.discarded_episodes  # re-run episodes of dead or hung workers
        for g, context in enumerate(contexts):
            group = rollouts[g * k : (g + 1) * k]
            rewards = [float(x.success) for x in group]
            for rollout in group:
                for name, v in rollout.metrics.items():
                    env_metrics[name] = env_metrics.get(name, 0.0) + float(v)
            successes += int(sum(rewards))
            episodes += len(rewards)
            sampler.record(context, rewards)
            # keep_uninformative_groups (benchmarks): the same update work every iteration
            informative = cfg.keep_uninformative_groups or is_informative(rewards)
            if not informative or kept >= cfg.groups_per_iteration:
                dropped += 1
                log.debug("iteration %d: dropped group %s rewards %s", iteration, context, rewards)
                continue
            kept += 1
            decisions.extend(flatten(group, leave_one_out_advantages(np.array([rewards]))[0]))
            log.debug("iteration %d: kept group %s rewards %s", iteration, context, rewards)
        rounds += 1
    metrics = {
        "ript/kept_groups": kept,
        "ript/dropped_groups": dropped,
        "ript/sampling_rounds": rounds,
        "ript/decisions": len(decisions),
        "train/success_rate": successes / max(episodes, 1),
        "train/episodes": episodes,
        "train/env_steps": env_steps,
        "rollout/discarded_episodes": discarded,
        **{f"env/{name}": v for name, v in sorted(env_metrics.items())},
        **{
            name: v
            for name, v in rollout_metrics.items()
            if name.endswith(("_per_s", "occupancy", "_frac"))
        },
    }
    return decisions, metrics


# -- 5: the loss --------------------------------------------------------------------------
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


def old_log_probs(
    decisions: Sequence[Decision], log_prob: LogProb, micro_batch: int | None, pad: Any
) -> torch.Tensor:
    """``[N]`` float32 log-probs of every decision, in micro-batches of the
    update's size (same shapes, same kernels as the gradient passes)."""
    micro = micro_batch or max(len(decisions), 1)
    parts = []
    for start in range(0, len(decisions), micro):
        batch = decisions[start : start + micro]
        logp = log_prob([d.policy_input for d in batch], [d.record for d in batch])
        parts.append(logp.detach().float().cpu())
    ranks.pad_forwards(log_prob, pad, -(-len(decisions) // micro))
    return torch.cat(parts) if parts else torch.zeros(0)


# -- 6: the update ------------------------------------------------------------------------
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

    ``log_prob(inputs, records)`` recomputes the decisions' chunk log-probs with
    gradients. ``old_log_prob`` (same signature, no gradients): the ratio's
    denominator is re-scored with it before the first step instead of read from
    ``record["log_prob"]``. ``extra_loss`` (e.g. a BC term) is added once per
    optimizer step. ``comm_timer`` (``cfg.time_comm``) times the gradient sum.
    """
    adv = np.array([d.advantage for d in decisions], dtype=np.float32)
    if cfg.normalize_advantages and len(adv) > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    logs: dict[str, list[float]] = {}
    skipped = steps = 0
    pad = ranks.fsdp_padding(decisions, params)  # None unless sharded
    old = torch.tensor([float(d.record["log_prob"]) for d in decisions])
    if old_log_prob is not None:  # every rank: FSDP pads its forwards in there
        recorded, old = old, old_log_probs(decisions, old_log_prob, cfg.micro_batch, pad)
        # how far the sampler's arithmetic is from the update's
        shift = float((old - recorded).abs().mean()) if decisions else 0.0
        logs["old_log_prob_shift"] = [shift]
    for _epoch in range(cfg.ppo_epochs):
        order = rng.permutation(len(decisions))
        for mini in np.array_split(order, cfg.mini_batches):
            # every rank takes part in the same collectives, even with no local data
            total = ranks.global_count(len(mini))
            if total == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            micro = cfg.micro_batch or max(len(mini), 1)
            # FSDP: agree on the busiest rank's micro-batch count before the first forward
            n_pad = ranks.padding_count(-(-len(mini) // micro), pad)
            for start in range(0, len(mini), micro):
                idx = mini[start : start + micro]
                batch = [decisions[i] for i in idx]
                logp_new = log_prob([d.policy_input for d in batch], [d.record for d in batch])
                loss, stats = ppo_loss(
                    logp_new.float().cpu(),
                    old[torch.from_numpy(idx)],
                    torch.from_numpy(adv[idx]),
                    cfg.clip,
                    total,
                )
                loss.backward()
                loss_sum += loss.item()
                for name, v in stats.items():
                    logs.setdefault(name, []).append(v)
            ranks.pad_backwards(log_prob, pad, n_pad)
            if extra_loss is not None:
                bc = extra_loss()
                bc.backward()
                logs.setdefault("bc_loss", []).append(bc.item())
            collect_grads(optimizer)  # bf16 -> float32 master gradients (rl/optimizer.py)
            grad_norm = ranks.reduce_and_clip(params, cfg.max_grad_norm, comm_timer)
            # the norm is measured before clipping: the clipped gradients themselves
            # are what the step would apply (a collective: every rank asks)
            clipped_finite = ranks.grads_finite(params)
            if not (np.isfinite(loss_sum) and torch.isfinite(grad_norm) and clipped_finite):
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                continue
            optimizer.step()
            steps += 1
            logs.setdefault("loss", []).append(loss_sum)
            logs.setdefault("grad_norm", []).append(float(grad_norm))
    out = {name: float(np.mean(v)) for name, v in logs.items()}
    out["optimizer_steps"] = steps
    out["skipped_steps"] = skipped
    return out
