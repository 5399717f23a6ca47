"""torchrun support: who am I, and collectives that are no-ops alone.

``torchrun --nproc_per_node N ript train ...`` sets RANK/WORLD_SIZE; each
rank runs its own env workers and contexts; gradients are summed in the
update (:mod:`ript_core.rl.distributed_update`); only rank 0 writes
checkpoints and logs.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import attrs
import torch
import torch.distributed as dist


@attrs.frozen
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def init_from_env(cls) -> DistInfo:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        if not dist.is_initialized():
            # on GPUs: NCCL for CUDA tensors, gloo for the CPU ones (the update's
            # counts, metric sums, object gathers), which NCCL alone cannot reduce
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        return cls(dist.get_rank(), dist.get_world_size(), local)


def shutdown() -> None:
    """End a torchrun process group in order: every rank past its last
    collective (a barrier), then the teardown."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_rank(code: int = 0) -> None:
    """End a torchrun rank: :func:`shutdown`, flush, then ``os._exit(code)``,
    skipping the interpreter's finalization. Returns (nothing to do) when no
    process group was started.

    gloo's worker threads live as long as the group's C++ object, and once FSDP
    ran, DTensor's caches keep its device mesh, hence the group, referenced
    after ``destroy_process_group``: the threads are alive while the interpreter
    finalizes. One that drops a finished collective's tensors then must take the
    GIL; CPython ends that thread inside a noexcept destructor and the rank
    aborts ("terminate called without an active exception"), rarely, when load
    delays the thread. Without finalization there is no such window.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    shutdown()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def sum_floats(values: list[float]) -> list[float]:
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj: Any) -> list[Any]:
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()
