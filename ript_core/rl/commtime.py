"""Opt-in timing of the update's collectives (``update.time_comm: true``).

For benchmarks (``bench/multigpu_scaling.py``): how much of a RIPT update is
communication. Off by default because it synchronises CUDA around the
gradient all-reduce, which costs a little and changes no numbers.

What is measured, per kind (seconds, summed until :meth:`CommTimer.collect`):

- ``all_reduce``: the hand-written gradient all-reduce of ``loop._all_reduce_grads``
  (all gradients under DDP, the small replicated rest under FSDP), wall time
  with CUDA synchronised before and after: it runs after backward on the
  compute stream, so all of it is exposed;
- ``wait``: a barrier just before that all-reduce, i.e. the time this rank
  waited for slower ranks to finish their micro-batches (load imbalance, not
  transfer);
- ``all_gather`` / ``reduce_scatter``: FSDP's own collectives inside forward
  and backward, through timing comm objects installed with
  :meth:`Sharding.time_collectives`. On CUDA these run on FSDP's side streams
  and are timed with CUDA events on those streams: the kernel time including
  any wait for peers, which may overlap compute, so their share of the update
  is an upper bound on the exposed cost. On CPU (gloo) they block: wall time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist

KINDS = ("all_reduce", "wait", "all_gather", "reduce_scatter")


class CommTimer:
    """Seconds spent in collectives, by kind (:data:`KINDS`)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._totals = dict.fromkeys(KINDS, 0.0)
        # CUDA events recorded on a side stream, resolved in collect()
        self._pending: list[tuple[str, Any, Any]] = []

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    @contextlib.contextmanager
    def wall(self, kind: str) -> Iterator[None]:
        """Wall time of the block, CUDA synchronised on both sides (blocking work)."""
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self._totals[kind] += time.perf_counter() - start

    @contextlib.contextmanager
    def stream(self, kind: str) -> Iterator[None]:
        """Time of the block's work on the current CUDA stream (events, no
        synchronisation: FSDP's overlap is kept); wall time on CPU."""
        if not self.cuda:
            start = time.perf_counter()
            try:
                yield
            finally:
                self._totals[kind] += time.perf_counter() - start
            return
        begin = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        begin.record()
        try:
            yield
        finally:
            end.record()
            self._pending.append((kind, begin, end))

    def collect(self) -> dict[str, float]:
        """Every kind's seconds since the last call (zeros included, so that
        every rank reports the same keys), then reset."""
        if self._pending:
            self.sync()
            for kind, begin, end in self._pending:
                self._totals[kind] += begin.elapsed_time(end) / 1e3
            self._pending.clear()
        out = dict(self._totals)
        self._totals = dict.fromkeys(KINDS, 0.0)
        return out


def _all_gather_fn() -> Any:
    # all_gather_single is the current name; all_gather_into_tensor the one
    # older torch releases have (deprecated since)
    return getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def _reduce_scatter_fn() -> Any:
    return getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


class _TimedCollective:
    """What FSDP2's custom collectives share: the default allocation and the
    timer; subclasses time the default collective in ``__call__``."""

    def __init__(self, timer: CommTimer, fn: Any) -> None:
        self.timer = timer
        self._fn = fn

    def allocate(
        self, size: Sequence[int], *, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        return torch.empty(*size, dtype=dtype, device=device)


class TimedAllGather(_TimedCollective):
    """FSDP2 custom all-gather (``FSDPModule.set_custom_all_gather``): the
    default collective and allocation, timed."""

    def __init__(self, timer: CommTimer) -> None:
        super().__init__(timer, _all_gather_fn())

    def __call__(
        self,
        output_tensor: torch.Tensor,
        input_tensor: torch.Tensor,
        group: dist.ProcessGroup,
        async_op: bool = False,
    ) -> Any:
        # FSDP calls it with async_op=False unless unshard(async_op=True),
        # which this trainer never uses; an async call would time the launch only
        with self.timer.stream("all_gather"):
            return self._fn(output_tensor, input_tensor, group=group, async_op=async_op)


class TimedReduceScatter(_TimedCollective):
    """FSDP2 custom reduce-scatter (``FSDPModule.set_custom_reduce_scatter``), timed."""

    def __init__(self, timer: CommTimer) -> None:
        super().__init__(timer, _reduce_scatter_fn())

    def __call__(
        self,
        output_tensor: torch.Tensor,
        input_tensor: torch.Tensor,
        group: dist.ProcessGroup,
        op: Any,
        async_op: bool = False,
    ) -> Any:
        with self.timer.stream("reduce_scatter"):
            return self._fn(output_tensor, input_tensor, op=op, group=group, async_op=async_op)
