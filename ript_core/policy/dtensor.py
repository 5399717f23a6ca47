"""Whether FSDP has sharded a module's weights (its parameters are DTensors).

Several fast paths call a module's children or capture its kernels, which
bypasses the gathers FSDP hooks around the module's own call; they check
this first (activation checkpointing, the fast sampler, the KV-only prefix
layer)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

# imported once: any_sharded runs on every fast-sampler call (param_watch.py)
try:
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover - torch without distributed
    DTensor = None  # type: ignore[assignment,misc]


def has_sharded_parameters(module: nn.Module) -> bool:
    return any_sharded(module.parameters())


def any_sharded(params: Iterable[torch.Tensor]) -> bool:
    """Whether any of ``params`` is a DTensor (an FSDP shard)."""
    return DTensor is not None and any(isinstance(p, DTensor) for p in params)
