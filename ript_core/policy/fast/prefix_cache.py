"""The fast sampler's KV cache: one fixed buffer per layer for a prefix and a
suffix, each sample's valid prefix tokens first, so that shapes and addresses
never change (what a CUDA graph needs)."""

from __future__ import annotations

from typing import Any

import torch


class PrefixKVCache:
    """A fixed-size KV cache for one prefix and one suffix, duck-typing the
    part of transformers' ``Cache`` the Gemma layers use (``update``,
    ``get_seq_length``, ``is_initialized``).

    Storage per layer is ``[B, P + S, kv_heads, head_dim]`` (FlashAttention's
    ``[tokens, heads, dim]`` per sample) and every ``update`` returns the
    whole buffer as ``[B, kv_heads, P + S, head_dim]`` views: shapes and
    addresses are static -- what a CUDA graph needs. A sample's layout is
    ``[valid prefix | suffix | unused]``:

    - prefix phase (:meth:`begin_prefix`): the VLM's keys/values fill slots
      ``[0, P)`` (the sampler has put the valid prefix tokens first);
    - suffix phase (:meth:`begin_suffix`): each expert step writes its ``S``
      keys/values at ``[L_b, L_b + S)``, right after sample ``b``'s ``L_b``
      valid prefix tokens (over its padding, which nothing attends to).

    So every query sees a leading run of its sample's keys
    (varlen_attention.py). Inference only (in-place writes).
    """

    def __init__(
        self,
        layers: int,
        batch: int,
        kv_heads: int,
        prefix_len: int,
        suffix_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (batch, prefix_len + suffix_len, kv_heads, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.prefix_len = prefix_len
        self.suffix_len = suffix_len
        self.buffer_len = prefix_len + suffix_len
        self.is_initialized = True
        #: flat ``[B * S]`` rows of the suffix's slots in the flattened buffer
        #: (suffix phase), or None (prefix phase)
        self.suffix_rows: torch.Tensor | None = None

    def begin_prefix(self) -> None:
        self.suffix_rows = None

    def begin_suffix(self, valid_len: torch.Tensor) -> None:
        """Place the suffix of sample ``b`` at slots ``[valid_len[b], valid_len[b] + S)``."""
        bsz = valid_len.shape[0]
        slots = valid_len[:, None] + torch.arange(self.suffix_len, device=valid_len.device)
        base = torch.arange(bsz, device=valid_len.device)[:, None] * self.buffer_len
        self.suffix_rows = (base + slots).flatten()

    # Outside torch.compile's graphs (a graph break; the sampler's CUDA graph
    # captures the writes either way): traced, a write into the buffer was
    # functionalized into a full copy of it plus a copy back, twice per
    # layer and step.
    @torch.compiler.disable
    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, **_: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.keys[layer_idx], self.values[layer_idx]
        ks, vs = key_states.transpose(1, 2), value_states.transpose(1, 2)  # [B, n, KVH, D]
        if self.suffix_rows is None:
            k[:, : ks.shape[1]].copy_(ks)
            v[:, : vs.shape[1]].copy_(vs)
        else:
            bsz, n, kvh, dim = ks.shape
            k.view(-1, kvh, dim).index_copy_(0, self.suffix_rows, ks.reshape(bsz * n, kvh, dim))
            v.view(-1, kvh, dim).index_copy_(0, self.suffix_rows, vs.reshape(bsz * n, kvh, dim))
        return k.transpose(1, 2), v.transpose(1, 2)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0 if self.suffix_rows is None else self.prefix_len


def valid_first_order(valid: torch.Tensor) -> torch.Tensor:
    """``[B, P]`` long: a stable reordering of each sample's prefix tokens that
    puts the valid ones first (``order[b, slot]`` = source token). PI0's
    prefix is one bidirectional block and positions travel with the tokens,
    so the reordered prefix gives the same keys/values, only in other slots."""
    valid = valid.bool()
    count = valid.sum(1, keepdim=True)
    dest = torch.where(valid, valid.cumsum(1) - 1, (~valid).cumsum(1) - 1 + count)
    source = torch.arange(valid.shape[1], device=valid.device).expand_as(dest)
    return torch.empty_like(dest).scatter_(1, dest, source)
