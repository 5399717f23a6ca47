"""The prefix's last Gemma layer, cut down to what the action expert reads.

PI0's denoising steps see the prefix (images + prompt) only through each
Gemma layer's keys and values. The last layer's keys/values come from its
*input* (norm, ``k_proj``/``v_proj``, RoPE); its attention, ``o_proj``, MLP
and Gemma's final norm produce hidden states nothing reads. JAX's compiler
drops such dead work by itself (openpi); transformers' forward computes it,
and its MLP over every prefix token is the biggest matmul of the chunk.

:func:`last_layer_kv_only` swaps the last decoder layer for a
:class:`KVOnlyLayer` for one prefix pass. Its keys/values are computed by the
same modules and the same transformers function as the full layer's (equal
in float32, checked by the tests); what it returns in place of the layer's
output is its input, unchanged -- so the model's ``last_hidden_state`` is
meaningless during the swap and the caller must not read it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ript_core.policy.dtensor import has_sharded_parameters


class KVOnlyLayer(nn.Module):
    """Writes a decoder layer's keys/values into the cache and stops.

    The wrapped layer is this module's one child, so during the swap the
    model's parameters are the same tensors in the same order (their names
    gain a ``.layer``)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        attn = layer.self_attn
        # transformers' own RoPE of this attention class (Gemma's), not a copy
        self._rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb

    def forward(
        self,
        hidden_states: torch.Tensor,
        cache: Any = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        **_: Any,
    ) -> torch.Tensor:
        if cache is None or position_embeddings is None:
            raise ValueError(
                "KVOnlyLayer needs the cache to write into and the rotary position "
                "embeddings (GemmaModel passes both): it exists only to fill a prefix cache"
            )
        attn = self.layer.self_attn
        normed = self.layer.input_layernorm(hidden_states)
        shape = (*normed.shape[:-1], -1, attn.head_dim)
        keys = attn.k_proj(normed).view(shape).transpose(1, 2)
        values = attn.v_proj(normed).view(shape).transpose(1, 2)
        cos, sin = position_embeddings
        _, keys = self._rotary(keys, keys, cos, sin)  # (q, k): the query half is unused
        cache.update(keys, values, attn.layer_idx)
        return hidden_states


#: > 0 inside :func:`full_last_layer`: the swap is off
_FULL = 0


@contextlib.contextmanager
def full_last_layer() -> Iterator[None]:
    """Within the block every prefix pass runs its last layer in full, so
    that its output and the model's ``last_hidden_state`` are real: for tools
    that read hidden states (the debug recorder's stage-by-stage dumps)."""
    global _FULL
    _FULL += 1
    try:
        yield
    finally:
        _FULL -= 1


@contextlib.contextmanager
def last_layer_kv_only(language_model: nn.Module) -> Iterator[None]:
    """Within the block, ``language_model``'s last decoder layer only fills
    the cache (its output, and the model's ``last_hidden_state``, are not
    computed). The layer is put back afterwards, also on error. A
    FSDP-sharded layer is left as it is, and so is every layer inside
    :func:`full_last_layer` (the block then changes nothing)."""
    layers = language_model.layers
    last = language_model.config.num_hidden_layers - 1
    full = layers[last]
    # FSDP gathers a sharded layer's weights in hooks around the layer's own
    # call, which KVOnlyLayer bypasses (it calls the layer's children)
    if _FULL or has_sharded_parameters(full):
        yield
        return
    layers[last] = KVOnlyLayer(full)
    try:
        yield
    finally:
        layers[last] = full
