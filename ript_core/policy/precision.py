"""bf16 weights with float32 where precision matters.

Under bf16 the big matmuls (SigLIP, Gemma, expert) run in bf16; the small
modules that touch the flow's continuous quantities stay float32: the
action/state/time input embedding (transformers' time embedding is computed
in float32 but would otherwise be cast to bf16 before the MLP) and the
velocity output head. Casting hooks at their boundaries keep dtypes
consistent. Softmax in transformers' eager attention is already float32;
RMSNorm variance is float32; log-probs are computed in float64 by
:mod:`ript_core.policy.flow`.

The sinusoidal time embedding is computed in float64 from exact frequencies
in every precision (:class:`Float64TimestepEmbeddings`). transformers 5.24
keeps the frequency table as a float32 buffer, which ``model.to(bfloat16)``
rounds to bf16 (2.7e-3 relative error: at the top frequency, 2*pi/4e-3 rad
per unit of t, the phase is off by radians) and which in float32 alone puts
fp32 actions 2e-5 from a float64 reference (tests/debug). openpi's PyTorch model
computes this embedding in float64, its JAX model in float32 (never bf16).
See docs/debugging.md ("transformers vs openpi").
"""

from __future__ import annotations

import math

import torch
from transformers import PI0ForConditionalGeneration
from transformers.models.pi0.modeling_pi0 import PI0TimestepEmbeddings

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class Float64TimestepEmbeddings(PI0TimestepEmbeddings):
    """``[sin(2*pi*t/period), cos(2*pi*t/period)]`` in float64 (openpi's
    ``posemb_sincos``: periods ``min_period * (max_period/min_period)**linspace(0, 1)``).

    The frequencies are recomputed per call (``hidden/2`` numbers) instead of
    living in a buffer, so no ``model.to(dtype)`` can round them. The result is
    float64; transformers' ``PI0ActionTimeEmbedding`` casts it to the action
    embedding's dtype right after. Give it float64 ``t`` to keep the grid
    ``1 + i*dt`` exact: float32 ``0.6`` is off by 2.4e-8, which the top
    frequency turns into a 4e-5 rad phase error.
    """

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        # MPS has no float64; keep float32 there (the old behaviour).
        dtype = torch.float32 if time.device.type == "mps" else torch.float64
        half = self.config.dit_config.hidden_size // 2
        fraction = torch.linspace(0.0, 1.0, half, dtype=dtype, device=time.device)
        min_p, max_p = float(self.config.min_period), float(self.config.max_period)
        freq = 2.0 * math.pi / (min_p * (max_p / min_p) ** fraction)
        arg = time.to(dtype)[:, None] * freq[None, :]
        return torch.cat([arg.sin(), arg.cos()], dim=1)


def install_exact_time_embedding(model: PI0ForConditionalGeneration) -> None:
    """Swap transformers' time embedding for :class:`Float64TimestepEmbeddings`
    (it has no parameters and its buffer is not persistent: checkpoints are
    unaffected)."""
    old = model.embed_action_time.sinusoid_embeds
    if not isinstance(old, Float64TimestepEmbeddings):
        new = Float64TimestepEmbeddings(model.config)
        new.to(old.sinusoid_freq.device)
        model.embed_action_time.sinusoid_embeds = new


def apply_precision(model: PI0ForConditionalGeneration, dtype: torch.dtype) -> None:
    model.to(dtype)
    install_exact_time_embedding(model)
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


def tf32_settings() -> dict[str, object]:
    """The switches that make float32 matmuls/convolutions run in TF32."""
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
    }


def require_fp32_highest(what: str = "an fp32 parity run") -> None:
    """Refuse to run ``what`` with TF32 matmuls on (parity checklist B11).

    openpi's PyTorch model calls ``torch.set_float32_matmul_precision("high")``
    globally when it is constructed, so importing it next to a parity test
    silently changes every later fp32 result by ~1e-3 relative. cuDNN's own
    TF32 switch (on by default, convolutions only: SigLIP's patch embedding)
    is reported, not enforced, by :func:`tf32_settings`.
    """
    precision = torch.get_float32_matmul_precision()
    if precision != "highest" or torch.backends.cuda.matmul.allow_tf32:
        raise RuntimeError(
            f"{what} needs full-precision float32 matmuls, but TF32 is on "
            f"(float32_matmul_precision={precision!r}, cuda.matmul.allow_tf32="
            f"{torch.backends.cuda.matmul.allow_tf32}); call "
            "torch.set_float32_matmul_precision('highest') first (something -- e.g. openpi's "
            "PI0Pytorch constructor -- switched it)"
        )
