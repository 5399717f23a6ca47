"""Regional ``torch.compile`` of PI0's transformer layers, switched on per use.

transformers' layers run ~40 small kernels each (rotary, GELU pieces, dtype
casts); inductor fuses them. Every SigLIP, Gemma and expert layer gets a
compiled ``__call__``. SigLIP layers share one graph per shape (parameters
are graph inputs); Gemma and expert layers get one each, because their
KV-cache update indexes per-layer storage by ``layer_idx``, a constant to
dynamo (inductor's graph cache makes the repeats cheap to compile; see
:func:`raise_recompile_limits`). Fusion changes numerics at bf16 rounding
level.

The compiled calls are *installed* only inside :meth:`CompiledLayers.installed`
(through ``nn.Module``'s own ``_compiled_call_impl`` hook, what
``Module.compile`` sets), so each use opts in:

- sampling (``policy.compile``): the fast sampler installs them around each
  chunk it captures or runs;
- the RIPT update (``update.compile``): the trainer installs them around the
  update. Gradient passes then run compiled forward *and* backward graphs
  (AOTAutograd), also under activation checkpointing.

What it gains is in docs/policy.md ("Measurements behind the fast path").
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

import torch
import torch._dynamo
from torch import nn

from ript_core.policy.activation_checkpointing import checkpointed_layers as transformer_layers
from ript_core.policy.fast.siglip_mlp import bias_in_activation

#: torch.compile's backend; tests use "aot_eager" (the same graphs, no codegen).
BACKEND = "inductor"
#: torch.compile's mode (None: inductor's default; the benches try
#: "max-autotune-no-cudagraphs", which autotunes Triton GEMM templates against
#: cuBLAS -- the sampler captures its own CUDA graphs, so no cudagraph modes).
MODE: str | None = None


#: Input signatures one layer may meet in a process: the fast sampler's batch
#: buckets (powers of two up to 2**15), the update's micro-batch shapes and
#: both grad modes.
SIGNATURES_PER_LAYER = 32


def raise_recompile_limits(model: nn.Module) -> None:
    """Raise dynamo's recompile limits so that no layer silently falls back to
    eager.

    Layers of one class share a code object, hence one dynamo cache, and the
    Gemma and expert layers do not share graphs: their KV-cache ``update``
    indexes per-layer storage by the module's ``layer_idx``, an int attribute
    dynamo treats as a constant. So the cache holds one entry per layer *and*
    signature -- 36 per batch bucket for PI0's Gemma and expert layers; past
    the limit dynamo would run some layers eagerly, with only a log warning."""
    cfg = torch._dynamo.config
    need = SIGNATURES_PER_LAYER * len(transformer_layers(model))
    cfg.recompile_limit = max(cfg.recompile_limit, need)
    cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 16 * need)


class CompiledLayers:
    """One compiled callable per layer of ``model``, made on first install."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._compiled: list[tuple[nn.Module, Any]] | None = None

    def _compile(self) -> list[tuple[nn.Module, Any]]:
        if self._compiled is None:
            raise_recompile_limits(self.model)
            self._compiled = [
                (layer, torch.compile(layer._call_impl, dynamic=False, backend=BACKEND, mode=MODE))
                for layer in transformer_layers(self.model)
            ]
        return self._compiled

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Route the layers' ``__call__`` through their compiled versions;
        restore whatever was there afterwards (nesting is fine)."""
        compiled = self._compile()
        before = [layer._compiled_call_impl for layer, _ in compiled]
        try:
            for layer, fn in compiled:
                layer._compiled_call_impl = fn
            with bias_in_activation(self.model):  # SigLIP's fc1 bias into the GELU kernel
                yield
        finally:
            for (layer, _), prev in zip(compiled, before, strict=True):
                layer._compiled_call_impl = prev


_BY_MODEL: weakref.WeakKeyDictionary[nn.Module, CompiledLayers] = weakref.WeakKeyDictionary()


def compiled_layers(model: nn.Module) -> CompiledLayers:
    """The one :class:`CompiledLayers` of ``model`` (sampler and update share
    the compiled graphs)."""
    found = _BY_MODEL.get(model)
    if found is None:
        found = _BY_MODEL[model] = CompiledLayers(model)
    return found


def layers_compiled(model: nn.Module) -> bool:
    """Whether compiled calls are installed on ``model``'s layers right now."""
    return any(layer._compiled_call_impl is not None for layer in transformer_layers(model))
