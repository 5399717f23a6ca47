"""Gemma's RMSNorm through torch's fused ``rms_norm`` kernel.

transformers' ``GemmaRMSNorm.forward`` spells the norm out in float32 --
cast, square, mean, add eps, rsqrt, multiply, ``1 + weight``, multiply,
cast back -- and eager PyTorch runs each of those as its own kernel: about
ten per call. PI0 calls it twice per layer: 2 x (18 Gemma + 10 steps x 18
expert) ~ 400 calls per chunk, so ~4,000 kernels; at large batches each of
them reads and writes a whole float32 activation.

:func:`use_fused_rms_norm` replaces the ``forward`` of every
``GemmaRMSNorm`` instance of one model (nothing global is patched) with the
same maths through ``torch.nn.functional.rms_norm`` (one fused kernel on
CUDA): float32 input, float32 ``1 + weight`` as the norm's weight, cast back
to the input's dtype -- Gemma's order (multiply in float32, then round), not
Llama's. Results match transformers' to float32 rounding (the reduction
order differs); sampling, re-scoring and BC all go through the same modules,
so the PPO ratio of an unchanged policy is unaffected.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


def fused_gemma_rms_norm(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``GemmaRMSNorm.forward``: ``(x / rms(x)) * (1 + w)`` in float32, cast back."""
    weight = 1.0 + self.weight.float()
    return F.rms_norm(x.float(), weight.shape, weight, self.eps).type_as(x)


def use_fused_rms_norm(model: nn.Module, on: bool = True) -> int:
    """Route every ``GemmaRMSNorm`` of ``model`` through
    :func:`fused_gemma_rms_norm` (``on``) or back to transformers' own
    ``forward``; returns how many. Idempotent."""
    n = 0
    for module in model.modules():
        if type(module).__name__ == "GemmaRMSNorm":
            if on:
                module.forward = types.MethodType(fused_gemma_rms_norm, module)
            else:
                module.__dict__.pop("forward", None)  # the class's forward again
            n += 1
    return n
