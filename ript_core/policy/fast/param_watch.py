"""A per-call check that a model's parameter tensors are the ones a CUDA
graph captured -- in a fraction of a millisecond.

A graph reads parameters by address: an in-place optimizer step is seen by
the next replay, but a *replaced* tensor is not (``p.data = ...``,
``model.to(dtype)``, ``load_state_dict(assign=True)``, a module or a
``Parameter`` set as an attribute). The fast sampler therefore compares a
fingerprint of the parameters before every replay.

Walking ``model.parameters()`` for it on every call (PI0: 777 parameters in
821 modules) was a noticeable part of a batch-1 chunk (docs/policy.md). So
the module walk is cached: torch's global registration hooks bump an epoch
whenever any module anywhere registers a parameter or a submodule (what
attribute assignment does), which invalidates it, and each call reads the
cached modules' parameter dicts and the tensors' addresses and dtypes. A ``p.data`` swap or a cast keeps the ``Parameter`` object but
changes its address or dtype: the fingerprint catches it without a new walk.
The same holds for the sampler's other per-call question, "are the weights
FSDP-sharded?" (another full walk, as costly).
"""

from __future__ import annotations

import operator
import weakref
from typing import Any

import torch
from torch import nn

from ript_core.policy.dtensor import any_sharded

_epoch = 0


def _registered(*_: Any) -> None:
    """Global registration hook: count, change nothing (``None`` keeps the value).

    Not while torch.compile traces: a traced ``ModuleList`` slice (Gemma's
    ``self.layers[:n]``) registers its members in a temporary container,
    and a counted trace would make the graph guard on the epoch and write it
    on every call -- a recompile and a fresh module walk per step."""
    global _epoch
    if torch.compiler.is_compiling():
        return
    _epoch += 1


# process-wide, cheap (an increment per registration), registered once
nn.modules.module.register_module_parameter_registration_hook(_registered)
nn.modules.module.register_module_module_registration_hook(_registered)

_ADDRESS = torch.Tensor.data_ptr
_DTYPE = operator.attrgetter("dtype")


class ParameterWatch:
    """The parameters of ``model`` as a CUDA graph sees them, checked per call.

    The module list is walked again only after a registration; each call
    then reads the cached modules' own ``_parameters`` dicts, which also sees tensors put there directly, as FSDP's
    ``fully_shard`` does, and fingerprints the addresses and dtypes."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._epoch = -1
        self._modules: list[nn.Module] = []
        #: how many times the module list was walked (tests, benches)
        self.walks = 0

    def parameters(self) -> list[nn.Parameter]:
        """Every parameter (a tied one once per module that holds it)."""
        if self._epoch != _epoch:
            self._modules = list(self.model.modules())
            self._epoch = _epoch
            self.walks += 1
        return [p for m in self._modules for p in m._parameters.values() if p is not None]

    def sharded(self) -> bool:
        """Whether any parameter is a DTensor (FSDP-sharded: no graphs)."""
        return any_sharded(self.parameters())

    def fingerprint(self) -> tuple[tuple[int, ...], tuple[torch.dtype, ...]]:
        ps = self.parameters()
        return tuple(map(_ADDRESS, ps)), tuple(map(_DTYPE, ps))


_WATCHES: weakref.WeakKeyDictionary[nn.Module, ParameterWatch] = weakref.WeakKeyDictionary()


def watch(model: nn.Module) -> ParameterWatch:
    """The one :class:`ParameterWatch` of ``model``."""
    found = _WATCHES.get(model)
    if found is None:
        found = _WATCHES[model] = ParameterWatch(model)
    return found
