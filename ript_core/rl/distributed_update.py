"""What the LOOP update (:func:`ript_core.rl.ript.loop_update`) needs from torch.distributed.

Alone (one process) every function here is a no-op or torch's own. Under torchrun:

- replicated gradients are summed by hand, as DDP would sum them, because the
  policy's ``log_prob`` method, not ``forward``, drives backward
  (:func:`all_reduce_grads`); FSDP's sharded ones were already reduce-scattered
  inside backward;
- under FSDP every forward and backward is a collective, so all ranks run the same
  number of them: a rank with fewer micro-batches re-scores a padding decision with
  zero weight (:func:`fsdp_padding`, :func:`pad_forwards`, :func:`pad_backwards`);
- the gradient norm is clipped over shards and replicated tensors together
  (:func:`clip_grad_norm`), and the clipped gradients checked finite on every
  rank (:func:`grads_finite`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ript_core.rl.commtime import CommTimer
from ript_core.rl.fsdp import is_sharded

T = TypeVar("T")

#: Gradient elements per all-reduce call (2**26 float32 = 256 MiB): one flat copy
#: of every gradient would be a second full set of gradients on each rank, which
#: the planner does not charge (docs/training.md, "DDP or FSDP").
ALL_REDUCE_BUCKET_NUMEL = 1 << 26


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def global_count(n: int, op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM) -> int:
    """``n`` reduced over ranks (sum by default); ``n`` alone."""
    if _initialized():
        t = torch.tensor([n], dtype=torch.long)
        dist.all_reduce(t, op=op)
        return int(t.item())
    return n


# -- FSDP: every rank runs as many forwards and backwards ---------------------------
def fsdp_padding(items: Sequence[T], params: Sequence[torch.Tensor]) -> T | None:
    """The item that padding micro-batches re-score, or ``None`` when nothing is
    sharded (no padding needed). A local one; when some rank has none at all,
    one borrowed from another rank (collective)."""
    if not any(is_sharded(p) for p in params):
        return None
    if global_count(len(items), dist.ReduceOp.MIN) > 0:
        return items[0] if items else None
    theirs: list[T | None] = [None] * dist.get_world_size()
    dist.all_gather_object(theirs, items[0] if items else None)
    return next((d for d in theirs if d is not None), None)


def padding_count(n_micro: int, pad: Any | None) -> int:
    """How many padding micro-batches this rank runs to match the busiest rank
    (collective under FSDP, where ``pad`` is set; 0 otherwise)."""
    if pad is None:
        return 0
    return global_count(n_micro, dist.ReduceOp.MAX) - n_micro


def pad_forwards(log_prob: Callable[..., torch.Tensor], pad: Any | None, n_micro: int) -> None:
    """No-gradient forwards (the old log-probs' pass) on the padding decision."""
    for _ in range(padding_count(n_micro, pad)):
        log_prob([pad.policy_input], [pad.record])


def pad_backwards(log_prob: Callable[..., torch.Tensor], pad: Any | None, n: int) -> None:
    """``n`` zero-weight micro-batches: the same collectives, no gradient."""
    for _ in range(n):
        logp = log_prob([pad.policy_input], [pad.record])
        (logp.float().cpu().sum() * 0.0).backward()


# -- gradients --------------------------------------------------------------------------
def all_reduce_grads(params: list[torch.nn.Parameter], timer: CommTimer | None = None) -> None:
    """Sum the replicated gradients over ranks.

    A parameter that got no gradient on any rank keeps ``grad = None`` (so AdamW
    skips it, as in one process); one that got a gradient on some rank gets zeros
    on the others before the sum. With a ``timer``: a barrier first (timed as
    ``wait``: slower ranks still in backward), then the reduce (``all_reduce``).
    """
    if not _initialized() or dist.get_world_size() == 1:
        return
    if timer is None:
        _sum_grads(params)
        return
    with timer.wall("wait"):
        dist.barrier()
    with timer.wall("all_reduce"):
        _sum_grads(params)


def _sum_grads(params: list[torch.nn.Parameter]) -> None:
    params = [p for p in params if not is_sharded(p)]  # FSDP reduced those in backward
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
    """All-reduce in place when the bucket is one contiguous gradient, else
    through one flat copy of the bucket."""
    if len(bucket) == 1 and bucket[0].grad.is_contiguous():
        dist.all_reduce(bucket[0].grad)
        return
    flat = torch.cat([p.grad.reshape(-1) for p in bucket])
    dist.all_reduce(flat)
    offset = 0
    for p in bucket:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` over sharded (DTensor) and replicated gradients.

    The global squared norm is the all-reduced sum of the local shards' squares
    plus the replicated gradients' squares (identical on every rank after
    :func:`all_reduce_grads`, so counted once). Same clip coefficient as torch's:
    ``max_norm / (norm + 1e-6)``, capped at 1.
    """
    sharded = [p.grad for p in params if p.grad is not None and is_sharded(p.grad)]
    if not sharded:  # nothing sharded: torch's own, bit for bit
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    plain = [p.grad for p in params if p.grad is not None and not is_sharded(p.grad)]
    total = global_norm(sharded, plain)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    if torch.isfinite(total):
        for g in sharded:
            g.to_local().mul_(coef.to(g.device))
        for g in plain:
            g.mul_(coef.to(g.device))
    return total


def global_norm(sharded: Sequence[torch.Tensor], plain: Sequence[torch.Tensor]) -> torch.Tensor:
    """The float32 2-norm of ``sharded`` (DTensor shards, summed over ranks) and
    ``plain`` tensors (replicated: counted once) together, in float64."""
    local = torch.zeros((), dtype=torch.float64)
    for t in sharded:
        local += t.to_local().detach().double().pow(2).sum().cpu()
    if _initialized() and sharded:
        dist.all_reduce(local)
    for t in plain:
        local += t.detach().double().pow(2).sum().cpu()
    return local.sqrt().float()


def weight_norm(params: Sequence[torch.nn.Parameter]) -> float:
    """The global norm of the weights themselves (sharded or not)."""
    sharded = [p for p in params if is_sharded(p)]
    return float(global_norm(sharded, [p for p in params if not is_sharded(p)]))


def grads_finite(params: Sequence[torch.nn.Parameter]) -> bool:
    """Whether every gradient entry is finite on every rank: read after clipping,
    because a clip can turn finite gradients into NaN (a NaN ``max_grad_norm``)."""
    local = [
        (g.to_local() if is_sharded(g) else g).isfinite().all()
        for g in (p.grad for p in params)
        if g is not None
    ]
    ok = (
        torch.stack(local).all().cpu().to(torch.int32)
        if local
        else torch.ones((), dtype=torch.int32)
    )
    if _initialized() and any(p.grad is not None and is_sharded(p.grad) for p in params):
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)  # each rank saw only its shards
    return bool(ok)


def reduce_and_clip(
    params: list[torch.nn.Parameter], max_norm: float, timer: CommTimer | None = None
) -> torch.Tensor:
    """Sum the gradients over ranks, then clip their global norm; returns the norm."""
    all_reduce_grads(params, timer)
    return clip_grad_norm(params, max_norm)
