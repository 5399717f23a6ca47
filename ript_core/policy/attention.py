"""The policy's attention: which fused SDPA kernels may run on CUDA, and
:func:`gqa_attention`, the Gemma/expert attention function
(``PolicyConfig.attn_implementation = "ript_gqa"``, the default) that reads
the one shared key/value head once instead of repeating it per query head.

Every PI0 attention call passes a boolean mask (prefix padding, the suffix's
block structure), so FlashAttention is never eligible and torch picks among
cuDNN, memory-efficient and math kernels. On the H100 it picked cuDNN's, and
that kernel took 58 us per call at the expert's shape (51 queries x 611
keys, batch 1): 11.6 of the 43 ms of GPU time of a full-size chunk, more than
all the expert's matmuls together (``bench/gpu_profile.py``,
``bench/results/gpu_profile.json``). Sampling, re-scoring (``log_prob``) and
BC therefore run with cuDNN attention switched off; all three use the same
kernels, so the PPO ratio of an unchanged policy stays exactly 1.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

#: In order of preference; cuDNN's left out (module docstring).
CUDA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

Method = TypeVar("Method", bound=Callable[..., Any])


@contextlib.contextmanager
def attention_backends(device: torch.device) -> Iterator[None]:
    """Restrict SDPA to :data:`CUDA_BACKENDS` on a CUDA device; nothing elsewhere."""
    if device.type != "cuda":
        yield
        return
    with sdpa_kernel(CUDA_BACKENDS):
        yield


def with_attention_backends(method: Method) -> Method:
    """Decorate a method of an object with a ``device`` (the policy, its fast
    sampler) with :func:`attention_backends`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with attention_backends(self.device):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


# ---- GQA attention without repeated keys/values ------------------------------------

#: The name the policy's configs use for :func:`gqa_attention`
#: (``PolicyConfig.attn_implementation``).
GQA_ATTENTION = "ript_gqa"

#: Problems with at most this many attention scores (batch x query heads x
#: queries x keys) run as two matmuls and a float32 softmax on CUDA instead
#: of a fused kernel (see :func:`gqa_attention`). Measured on the H100
#: (bench/attention_kernels.py).
MATMUL_MAX_SCORES = 1 << 21
#: Devices where small problems take the matmul path (tests add "cpu").
MATMUL_DEVICES: tuple[str, ...] = ("cuda",)


def _fallback(module: Any, query: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, *args, **kwargs)


def gqa_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature; the policy's Gemma and
    expert layers call it when ``attn_implementation="ript_gqa"``.

    PI0's Gemma layers have 8 query heads sharing one key/value head, and
    every call carries a mask. transformers' SDPA path then repeats the keys
    and values 8x (``repeat_kv``: a copy of the whole KV cache per layer and
    denoising step, and 8x the K/V memory autograd keeps) because the fused
    kernels take GQA only without a mask. Here the 8 query heads that share a
    KV head are folded into the query dimension instead -- ``[B, H, S, D]``
    -> ``[B, KV, H/KV * S, D]``, the mask's rows repeated alike -- so the
    keys and values are read once, as they are.

    Small problems without autograd (at most :data:`MATMUL_MAX_SCORES`
    scores, e.g. an expert step while sampling at small batch) run on CUDA as
    ``q @ k^T`` in float32, the mask, a float32 softmax, then ``p @ v``: a
    fused kernel gets one thread block per 64 queries and head there (a
    handful on a 132-SM GPU), the matmuls spread over the whole GPU. Larger
    ones, and every call that needs gradients (the float32 scores autograd
    would keep cost more memory than the planner allows), call the fused SDPA
    kernels on the folded tensors. Sampling and a no-grad re-scoring of the
    same batch take the same path, so their log-probs stay identical. Anything else (causal without mask, dropout, position bias,
    softcap, no GQA) goes to transformers' own SDPA function.
    """
    bsz, heads, q_len, dim = query.shape
    kv_heads, kv_len = key.shape[1], key.shape[2]
    if (
        kv_heads == heads
        or heads % kv_heads
        or dropout
        or (is_causal and attention_mask is None)
        or kwargs.get("position_bias") is not None
        or kwargs.get("softcap") is not None
    ):
        return _fallback(
            module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs
        )
    group = heads // kv_heads
    scale = dim**-0.5 if scaling is None else scaling
    # heads are ordered (kv head, member): repeat_kv maps KV head j to heads
    # j*group .. j*group+group-1
    q = query.reshape(bsz, kv_heads, group * q_len, dim)
    mask = attention_mask
    if mask is not None and mask.shape[1] not in (1, heads):
        raise ValueError(f"attention mask with {mask.shape[1]} heads for {heads} query heads")
    scores_n = bsz * heads * q_len * kv_len
    grad = torch.is_grad_enabled() and (query.requires_grad or key.requires_grad)
    if not grad and query.device.type in MATMUL_DEVICES and scores_n <= MATMUL_MAX_SCORES:
        scores = torch.matmul(q.float(), key.float().transpose(-1, -2)).mul_(scale)
        scores = scores.view(bsz, kv_heads, group, q_len, kv_len)
        if mask is not None:
            rows = mask.shape[1] if mask.shape[1] == 1 else kv_heads
            m = mask.view(bsz, rows, -1, q_len, kv_len)  # broadcasts over the group
            scores = scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else scores + m
        probs = torch.softmax(scores, dim=-1).to(value.dtype)
        out = torch.matmul(probs.view(bsz, kv_heads, group * q_len, kv_len), value)
    else:
        if mask is not None:
            # [B, 1, S, L] -> [B, 1, G*S, L] (a copy: broadcast rows can't fold);
            # [B, H, S, L] -> [B, KV, G*S, L] (a view)
            rows = mask.shape[1] if mask.shape[1] == 1 else kv_heads
            mask = mask.view(bsz, rows, -1, q_len, kv_len).expand(bsz, rows, group, q_len, kv_len)
            mask = mask.reshape(bsz, rows, group * q_len, kv_len)
        out = F.scaled_dot_product_attention(q, key, value, attn_mask=mask, scale=scale)
    out = out.view(bsz, heads, q_len, dim).transpose(1, 2).contiguous()
    return out, None


def register_attention() -> None:
    """Make :data:`GQA_ATTENTION` a transformers attention implementation
    (its masks are SDPA's boolean masks). Idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(GQA_ATTENTION, gqa_attention)
    AttentionMaskInterface.register(GQA_ATTENTION, sdpa_mask)


register_attention()
