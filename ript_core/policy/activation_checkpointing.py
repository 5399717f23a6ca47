"""Activation checkpointing for the RIPT update (``log_prob`` with gradients).

What it saves: each transformer layer (SigLIP, Gemma, expert) keeps only its
inputs during the forward and recomputes its internals when backward reaches
it (``torch.utils.checkpoint``, non-reentrant), about one extra forward of
compute for a large cut in stored activations -- what lets the update run a
bigger micro-batch (docs/planner.md).

Why not transformers' own (``gradient_checkpointing_enable``): in training
mode it switches the KV cache off, and PI0's expert reads the prefix's keys
and values from that cache, so ``log_prob`` fails. Why a cache of our own
while checkpointing: a recomputed layer calls ``cache.update`` again, and
transformers' ``DynamicCache`` appends -- the recomputed Gemma layer would
see its prefix twice, an expert layer the previous steps' suffixes. Here:

- the VLM writes the prefix into a *recording* cache whose ``update`` stores
  (replaces) the layer's keys/values and returns them: recomputing stores the
  same values again;
- the expert steps read through a *frozen* view whose ``update`` returns
  prefix + this step's suffix without storing anything: every step, and
  every recomputation of one, sees exactly the prefix.

The maths is unchanged (tests/policy/test_checkpointing.py: identical
log-probs and gradients, and the bytes autograd stores). Not supported on
FSDP-sharded weights (their gather hooks run around ``__call__``, which a
recomputation bypasses).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch
from torch import nn
from torch.nn.attention import sdpa_kernel
from torch.utils.checkpoint import checkpoint
from transformers.cache_utils import Cache, DynamicLayer

from ript_core.policy.attention import allowed_backends
from ript_core.policy.dtensor import has_sharded_parameters

_ORIGINAL = "_ript_forward_without_checkpointing"


def checkpointed_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder/encoder layers of a ``PI0ForConditionalGeneration`` that get
    wrapped: every SigLIP, Gemma and expert layer."""
    vlm = model.model.vlm
    return [
        *vlm.vision_tower.encoder.layers,
        *vlm.language_model.layers,
        *model.model.dit.layers,
    ]


def set_activation_checkpointing(model: nn.Module, on: bool) -> None:
    """Wrap (``on``) or unwrap every layer's ``forward``; idempotent."""
    if on and has_sharded_parameters(model):
        raise ValueError(
            "activation checkpointing is not supported with FSDP-sharded weights: use "
            "update.distributed ddp, or a smaller micro-batch without checkpointing"
        )
    for layer in checkpointed_layers(model):
        wrapped = hasattr(layer, _ORIGINAL)
        if on and not wrapped:
            original = layer.forward
            setattr(layer, _ORIGINAL, original)
            layer.forward = functools.partial(_checkpointed_forward, original)
        elif not on and wrapped:
            layer.forward = getattr(layer, _ORIGINAL)
            delattr(layer, _ORIGINAL)


def activation_checkpointing(model: nn.Module) -> bool:
    return any(hasattr(layer, _ORIGINAL) for layer in checkpointed_layers(model))


def _checkpointed_forward(original: Any, *args: Any, **kwargs: Any) -> Any:
    if not torch.is_grad_enabled():  # sampling, evaluation: nothing to save anyway
        return original(*args, **kwargs)
    if torch.compiler.is_compiling():
        # a compiled layer (ript_core.policy.fast.compiled_layers): the kernels are
        # fixed when the graph is traced and the recomputation is part of the
        # compiled backward graph, so it runs the forward's kernels by
        # construction -- and torch refuses a context_fn that is not a
        # TorchDispatchMode there
        return checkpoint(original, *args, use_reentrant=False, **kwargs)
    return checkpoint(
        original, *args, use_reentrant=False, context_fn=_same_sdpa_backends, **kwargs
    )


def _same_sdpa_backends() -> tuple[Any, Any]:
    """Recompute a layer with the SDPA kernels its forward was allowed.

    The policy picks its kernels in a context around ``log_prob``
    (ript_core/policy/attention.py), but the recomputation runs inside
    ``backward()``, outside that context: with every backend on again, SDPA
    picked cuDNN there instead of the memory-efficient kernel of the forward,
    which saves differently shaped tensors (a ``CheckpointError`` on CUDA).
    Called when the forward runs; the second context is entered around
    the recomputation."""
    return contextlib.nullcontext(), sdpa_kernel(allowed_backends())


class _RecordingLayer(DynamicLayer):
    """Stores (replaces) the keys/values it is given and returns them."""

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.keys, self.values = key_states, value_states
        return key_states, value_states


class _FrozenLayer(DynamicLayer):
    """Prefix (from a recording layer) + the given suffix; stores nothing.

    With ``repeats = r`` the suffix has ``r`` rows per prefix row (row
    ``b * r + j`` belongs to sample ``b``): ``log_prob`` scores all denoising
    steps of a sample in one expert pass against that sample's prefix."""

    def __init__(self, prefix: DynamicLayer, repeats: int = 1) -> None:
        super().__init__()
        self.prefix = prefix
        self.repeats = repeats
        self.is_initialized = True

    @property  # type: ignore[override]
    def keys(self) -> torch.Tensor:
        return self.prefix.keys

    @keys.setter
    def keys(self, value: torch.Tensor) -> None:  # DynamicLayer.__init__ assigns None
        pass

    @property  # type: ignore[override]
    def values(self) -> torch.Tensor:
        return self.prefix.values

    @values.setter
    def values(self, value: torch.Tensor) -> None:
        pass

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            _join(self.prefix.keys, key_states, self.repeats),
            _join(self.prefix.values, value_states, self.repeats),
        )

    def crop(self, tokens_to_remove: int) -> None:
        pass  # nothing was appended


def _join(prefix: torch.Tensor, suffix: torch.Tensor, repeats: int) -> torch.Tensor:
    """``[B*r, H, P+S, D]``: each sample's prefix before each of its ``r``
    suffixes. The prefix is broadcast (``expand``), not copied, into the one
    concatenation that attention needs anyway; its gradient sums over the ``r``."""
    if repeats == 1:
        return torch.cat([prefix, suffix], dim=-2)
    b = prefix.shape[0]
    rows = suffix.reshape(b, repeats, *suffix.shape[1:])
    shared = prefix.unsqueeze(1).expand(b, repeats, *prefix.shape[1:])
    return torch.cat([shared, rows], dim=-2).flatten(0, 1)


def recording_cache() -> Cache:
    """The cache the VLM writes the prefix into under checkpointing."""
    return Cache(layer_class_to_replicate=_RecordingLayer)


def frozen_view(recorded: Cache, repeats: int = 1) -> Cache:
    """What the expert steps read: the recorded prefix, never extended.

    ``recorded`` may be any cache the VLM filled (transformers' own, a
    recording cache, or a frozen view of one); ``repeats`` > 1 serves ``r``
    suffix rows per sample (see :class:`_FrozenLayer`)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    layers = [
        layer.prefix if isinstance(layer, _FrozenLayer) else layer for layer in recorded.layers
    ]
    return Cache(layers=[_FrozenLayer(layer, repeats) for layer in layers])
