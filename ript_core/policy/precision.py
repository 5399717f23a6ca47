"""bf16 weights with float32 where precision matters.

Under bf16 the big matmuls (SigLIP, Gemma, expert) run in bf16; the small
modules that touch the flow's continuous quantities stay float32: the
action/state/time input embedding (transformers' time embedding is computed
in float32 but would otherwise be cast to bf16 before the MLP) and the
velocity output head. Casting hooks at their boundaries keep dtypes
consistent. Softmax in transformers' eager attention is already float32;
RMSNorm variance is float32; log-probs are computed in float64 by
:mod:`ript_core.policy.flow`.
"""

from __future__ import annotations

import torch
from transformers import PI0ForConditionalGeneration

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def apply_precision(model: PI0ForConditionalGeneration, dtype: torch.dtype) -> None:
    model.to(dtype)
    if dtype == torch.float32:
        return
    model.embed_action_time.float()
    model.action_out_proj.float()

    def cast_out(_module, _inputs, output):
        return output.to(dtype)

    def cast_in(_module, inputs):
        return tuple(x.float() if torch.is_tensor(x) else x for x in inputs)

    model.embed_action_time.register_forward_hook(cast_out)
    model.action_out_proj.register_forward_pre_hook(cast_in)
