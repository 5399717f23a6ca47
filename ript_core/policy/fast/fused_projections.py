"""The action expert's projections fused for sampling: ``q``/``k``/``v`` as one
GEMM, ``gate``/``up`` as one.

A denoising step runs the expert's 18 layers over 51 tokens per sample. At
small batches its GEMMs are launch- and tail-bound (a few CTAs each), seven
per layer. One GEMM
over the concatenated weights does the work of three (``q``, ``k``, ``v``:
1024 -> 2048 + 256 + 256) and of two (``gate``, ``up``: 1024 -> 2 x 4096):
three GEMMs fewer per layer and step, 540 per chunk of 10 steps.

The fused weights are *copies* (18 x 10.75 M elements: 396 MB in bf16 for
PI0), written at the start of every chunk inside its CUDA graph. So they are never stale, however the parameters change
between chunks (an optimizer step, ``load_state_dict``, an 8-bit optimizer
writing their memory directly). Training and re-scoring never use them: the
swap happens inside the fast sampler's chunk only.

A layer is fused only when its projections are plain ``nn.Linear`` without
bias, no hook sits on the modules the swap bypasses (an adapter, a
recorder), and its weights are not FSDP-sharded; other layers run as they
are. The attention keeps transformers' rotary function, cache ``update``
and attention-function dispatch (the rest of ``GemmaAttention.forward``);
the tests check the fused layers against transformers' in float32.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from ript_core.policy.dtensor import has_sharded_parameters


def _plain(linear: Any) -> bool:
    return type(linear) is nn.Linear and linear.bias is None


def _hooked(*modules: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def fusable(layer: nn.Module) -> bool:
    """Whether ``layer`` (a Gemma decoder layer) can run with fused projections."""
    attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
    if attn is None or mlp is None:
        return False
    projections = [getattr(attn, n, None) for n in ("q_proj", "k_proj", "v_proj")]
    projections += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj")]
    if not all(_plain(p) for p in projections):
        return False
    weights = [p.weight for p in projections]
    same = all(w.dtype == weights[0].dtype and w.device == weights[0].device for w in weights)
    return same and not _hooked(attn, mlp, *projections) and not has_sharded_parameters(layer)


class FusedAttention(nn.Module):
    """``GemmaAttention`` with ``q``, ``k`` and ``v`` from one GEMM over
    ``weight`` (their weights stacked). The original module is the child
    ``inner``: parameters, ``o_proj``, config and layer index are its own."""

    def __init__(self, inner: nn.Module, weight: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.weight = weight
        self.sizes = [
            inner.q_proj.out_features,
            inner.k_proj.out_features,
            inner.v_proj.out_features,
        ]
        # transformers' own RoPE and eager attention of this attention class, not copies
        module = sys.modules[type(inner).__module__]
        self._rotary: Callable[..., Any] = module.apply_rotary_pos_emb
        self._eager: Callable[..., Any] = module.eager_attention_forward

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Any = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, Any]:
        inner = self.inner
        input_shape = hidden_states.shape[:-1]
        shape = (*input_shape, -1, inner.head_dim)
        q, k, v = F.linear(hidden_states, self.weight).split(self.sizes, dim=-1)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))
        cos, sin = position_embeddings  # type: ignore[misc]
        q, k = self._rotary(q, k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, inner.layer_idx, kwargs=kwargs)
        attention = ALL_ATTENTION_FUNCTIONS.get_interface(
            inner.config._attn_implementation, self._eager
        )
        dropout = inner.attention_dropout if inner.training else 0.0
        out, weights = attention(
            inner, q, k, v, attention_mask, dropout=dropout, scaling=inner.scaling, **kwargs
        )
        out = out.reshape(*input_shape, -1).contiguous()
        return inner.o_proj(out), weights


class FusedMLP(nn.Module):
    """``GemmaMLP`` with ``gate`` and ``up`` from one GEMM over ``weight``."""

    def __init__(self, inner: nn.Module, weight: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.weight = weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(x, self.weight).chunk(2, dim=-1)
        return self.inner.down_proj(self.inner.act_fn(gate) * up)


class ExpertFusion:
    """Fused weight buffers for the fusable layers of ``model`` (PI0's expert,
    a Gemma model with ``layers``), and the swap that uses them."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.layers = [i for i, layer in enumerate(model.layers) if fusable(layer)]
        self.qkv: dict[int, torch.Tensor] = {}
        self.gate_up: dict[int, torch.Tensor] = {}
        for i in self.layers:
            attn, mlp = model.layers[i].self_attn, model.layers[i].mlp
            w = attn.q_proj.weight
            rows = sum(p.out_features for p in (attn.q_proj, attn.k_proj, attn.v_proj))
            self.qkv[i] = torch.empty(rows, w.shape[1], dtype=w.dtype, device=w.device)
            rows = mlp.gate_proj.out_features + mlp.up_proj.out_features
            self.gate_up[i] = torch.empty(rows, w.shape[1], dtype=w.dtype, device=w.device)

    @torch.no_grad()
    def refresh(self) -> None:
        """Copy the current weights into the fused buffers (in place: a CUDA
        graph that captured this keeps reading the same addresses)."""
        for i in self.layers:
            attn, mlp = self.model.layers[i].self_attn, self.model.layers[i].mlp
            torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight], out=self.qkv[i])
            torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], out=self.gate_up[i])

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Within the block the fusable layers run :class:`FusedAttention` and
        :class:`FusedMLP` (call :meth:`refresh` first); the original modules
        are put back afterwards, also on error."""
        swapped: list[tuple[nn.Module, nn.Module, nn.Module]] = []
        try:
            for i in self.layers:
                layer = self.model.layers[i]
                swapped.append((layer, layer.self_attn, layer.mlp))
                layer.self_attn = FusedAttention(layer.self_attn, self.qkv[i])
                layer.mlp = FusedMLP(layer.mlp, self.gate_up[i])
            yield
        finally:
            for layer, attn, mlp in swapped:
                layer.self_attn, layer.mlp = attn, mlp
