"""SigLIP's MLP for the compiled layers: ``fc1`` as a plain matmul, its bias
added in the GELU kernel.

``fc1`` (1152 -> 4304) is an ``addmm`` with a bias. Where cuBLASLt has no
bias-epilogue algorithm for it (the H100, docs/policy.md), torch falls back
to copying the broadcast bias into the whole output and running a GEMM that
reads it back. Written as a matmul and
an add, inductor fuses the add into the GELU kernel, which reads the
matmul's output anyway. Same maths; the bias is added after the product is
rounded to the weights' dtype instead of inside the GEMM (bf16 rounding
level). Installed with the compiled layers only (:mod:`.compiled_layers`):
eagerly the add would be a kernel of its own.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.siglip.modeling_siglip import SiglipMLP


def _forward(mlp: SiglipMLP, hidden_states: torch.Tensor) -> torch.Tensor:
    hidden = F.linear(hidden_states, mlp.fc1.weight)
    hidden = mlp.activation_fn(hidden + mlp.fc1.bias)
    return mlp.fc2(hidden)


def _mlps(model: nn.Module) -> list[SiglipMLP]:
    # a plain Linear only: an adapter-wrapped fc1 keeps its own forward
    return [
        m
        for m in model.modules()
        if isinstance(m, SiglipMLP) and type(m.fc1) is nn.Linear and m.fc1.bias is not None
    ]


@contextlib.contextmanager
def bias_in_activation(model: nn.Module) -> Iterator[None]:
    """Within the block, every SigLIP MLP of ``model`` adds ``fc1``'s bias
    next to its activation; whatever ``forward`` they had is restored after."""
    patched = []
    try:
        for mlp in _mlps(model):
            patched.append((mlp, mlp.__dict__.get("forward")))
            mlp.forward = types.MethodType(_forward, mlp)
        yield
    finally:
        for mlp, before in patched:
            if before is None:
                del mlp.forward
            else:
                mlp.forward = before
