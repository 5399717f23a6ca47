"""Whether FSDP has sharded a module's weights (its parameters are DTensors).

Several fast paths call a module's children or capture its kernels, which
bypasses the gathers FSDP hooks around the module's own call; they check
this first (activation checkpointing, the fast sampler, the KV-only prefix
layer)."""

from __future__ import annotations

from torch import nn


def has_sharded_parameters(module: nn.Module) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return any(isinstance(p, DTensor) for p in module.parameters())
