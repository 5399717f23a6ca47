"""AdamW with float32 master weights for a bfloat16 policy.

Why: AdamW's step is about ``lr`` per weight (1e-5 to 1e-4 in RIPT), while a
bf16 weight of magnitude 0.02 has a spacing of ~1.2e-4 -- so an AdamW that
updates bf16 tensors in place rounds most of its steps away, and bf16 moments
and gradient sums lose the small terms the update is made of. The usual fix
(mixed-precision training as in apex/DeepSpeed, openpi's fp32 optimizer state):
the optimizer owns a float32 copy of every low-precision trainable parameter
and steps that; the model keeps computing in bf16 with the copy rounded back
after each step.

How the gradients get there: a post-accumulate-grad hook on each bf16
parameter adds its gradient, in float32, into the master's ``.grad`` and frees
the bf16 one as soon as autograd has finished with it. So across micro-batches
the sum is float32 and at most one parameter's bf16 gradient is alive at a
time -- the memory the planner charges (ript_core.plan.cost: 2 B bf16
weight + 4 B master + 4 B fp32 gradient + 8 B moments per trainable parameter).

Why a subclass of ``torch.optim.AdamW`` and not a wrapper: LR schedulers,
``state_dict`` checkpoints and ``clip_grad_norm_`` all expect an optimizer
whose ``param_groups`` hold the tensors with gradients -- here the masters.
Callers that clip or all-reduce gradients must use :attr:`masters` (what
:func:`make_adamw` returns as the parameter list), not the model's tensors.

Not used for float32 parameters (nothing to gain: plain AdamW is built) nor
for FSDP-sharded ones (the config refuses FSDP with bf16: see
``RunConfig``).

8-bit moments (``optim.moments: 8bit``): the same float32 masters, stepped by
bitsandbytes' ``AdamW8bit``, which stores both moments blockwise-quantised in
one byte each (a float32 scale per 256 values; tensors under 4096 values keep
float32 moments) -- 2 instead of 8 bytes per trainable parameter, ~19 GB less
for full pi0. What it buys: on an 80 GB GPU full pi0's update then fits a
micro-batch of ~11 without activation checkpointing instead of 5 (docs/planner.md).
What it costs: the moments carry ~1 % quantisation noise (bitsandbytes'
dynamic 8-bit format); the masters, gradients and the update arithmetic stay
float32.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ript_core.plan.footprint import OPTIMIZER_MOMENTS
from ript_core.rl.config import bitsandbytes_missing


def _move_grad(master: torch.Tensor, param: torch.Tensor) -> None:
    """``master.grad += float(param.grad)``; ``param.grad = None``."""
    if param.grad is None:
        return
    g = param.grad.to(torch.float32)
    param.grad = None
    if master.grad is None:
        master.grad = g
    else:
        master.grad.add_(g)


def _route_grad(param: torch.Tensor) -> None:
    """The one hook on a bf16 parameter: hand its gradient to the master of the
    optimizer that owns it now (see :meth:`MasterWeightAdamW.claim`)."""
    ref = getattr(param, "_ript_master", None)
    master = ref() if ref is not None else None
    if master is not None:
        _move_grad(master, param)


class MasterWeights:
    """Mixin for an AdamW class: steps float32 copies (:attr:`masters`) of
    ``params``; after every :meth:`step` the copies are rounded into
    ``params``. A parameter that is already float32 (PI0's action/time
    projections and action head under bf16, see ript_core.policy.precision)
    is its own master.

    Several optimizers may hold the same parameters (the trainer's, and the BC
    warm start's before it): each parameter has one hook, and it feeds the
    optimizer that last called :meth:`zero_grad` -- every update starts with
    one. Taking a parameter over from another optimizer re-reads its master
    from the model when the two differ (the other one stepped it).
    """

    def __init__(self, params: Iterable[nn.Parameter], **adamw: Any) -> None:
        self.model_params: list[nn.Parameter] = list(params)
        self.masters: list[nn.Parameter] = [
            p if p.dtype == torch.float32 else nn.Parameter(p.detach().to(torch.float32, copy=True))
            for p in self.model_params
        ]
        super().__init__(self.masters, **adamw)  # type: ignore[call-arg]
        for p, _ in self._copied():
            if not getattr(p, "_ript_master_hook", False):
                p.register_post_accumulate_grad_hook(_route_grad)
                p._ript_master_hook = True
        self.claim()

    @torch.no_grad()
    def claim(self) -> None:
        """Route the parameters' gradients to this optimizer's masters."""
        for p, m in self._copied():
            ref = getattr(p, "_ript_master", None)
            if ref is not None and ref() is m:
                continue
            if not torch.equal(m.to(p.dtype), p):  # changed since this master was made
                m.copy_(p)
            p._ript_master = weakref.ref(m)

    def _copied(self) -> list[tuple[nn.Parameter, nn.Parameter]]:
        return [(p, m) for p, m in zip(self.model_params, self.masters, strict=True) if p is not m]

    def collect_grads(self) -> None:
        """Move any gradient a hook did not (e.g. one assigned directly to
        ``param.grad`` rather than accumulated by autograd) onto the masters."""
        for p, m in self._copied():
            _move_grad(m, p)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.claim()
        super().zero_grad(set_to_none=set_to_none)  # type: ignore[misc]
        for p, _ in self._copied():
            p.grad = None

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        self.collect_grads()
        loss = super().step(closure)  # type: ignore[misc]
        for p, m in self._copied():
            p.copy_(m)  # round to nearest: what the model computes with
        return loss

    def state_dict(self) -> dict[str, Any]:
        # the masters carry the low bits that the bf16 model weights lost;
        # without them a resumed run would restart from rounded weights
        out = super().state_dict()  # type: ignore[misc]
        out["master_weights"] = [m.detach().cpu().clone() for _, m in self._copied()]
        return out

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        saved = state.pop("master_weights", None)
        super().load_state_dict(state)  # type: ignore[misc]
        copied = self._copied()
        if saved is None:  # a checkpoint from a plain AdamW: start from the model's weights
            for p, m in copied:
                m.copy_(p)
            return
        if len(saved) != len(copied):
            raise ValueError(
                f"optimizer state holds {len(saved)} master weights, the optimizer "
                f"{len(copied)}: the checkpoint was written for another strategy or dtype"
            )
        for (p, m), s in zip(copied, saved, strict=True):
            m.copy_(s)
            p.copy_(m)


class MasterWeightAdamW(MasterWeights, torch.optim.AdamW):
    """torch's AdamW (float32 moments) over float32 masters (:class:`MasterWeights`)."""


_ADAMW_8BIT: dict[str, type] = {}


def _adamw_8bit_classes() -> tuple[type, type]:
    """bitsandbytes' AdamW8bit, and it over float32 masters (imported on first use)."""
    if not _ADAMW_8BIT:
        missing = bitsandbytes_missing()
        if missing:
            raise ImportError(missing)
        from bitsandbytes.optim import AdamW8bit

        class MasterWeightAdamW8bit(MasterWeights, AdamW8bit):
            """bitsandbytes' AdamW8bit (8-bit moments) over float32 masters."""

        _ADAMW_8BIT.update(plain=AdamW8bit, masters=MasterWeightAdamW8bit)
    return _ADAMW_8BIT["plain"], _ADAMW_8BIT["masters"]


def make_adamw(
    params: Sequence[nn.Parameter], moments: str = "fp32", **adamw: Any
) -> tuple[torch.optim.Optimizer, list[nn.Parameter]]:
    """AdamW for ``params``, and the tensors whose gradients the caller clips,
    all-reduces and checks: the params themselves when all are float32,
    otherwise the float32 masters of a :class:`MasterWeights` optimizer.

    ``moments``: ``"fp32"`` (torch's AdamW; on CUDA its fused implementation,
    which keeps no extra copy of the parameters per step, as the planner
    assumes) or ``"8bit"`` (bitsandbytes' AdamW8bit, module docstring)."""
    if moments not in OPTIMIZER_MOMENTS:
        raise ValueError(f"optim.moments {moments!r}: use one of {', '.join(OPTIMIZER_MOMENTS)}")
    params = list(params)
    if moments == "8bit":
        adamw.pop("fused", None)  # bitsandbytes has its own kernels
        plain, masters = _adamw_8bit_classes()
        if all(p.dtype == torch.float32 for p in params):
            return plain(params, **adamw), params
        opt = masters(params, **adamw)
        return opt, opt.masters
    if params and all(p.is_cuda for p in params):
        adamw.setdefault("fused", True)
    if all(p.dtype == torch.float32 for p in params):
        return torch.optim.AdamW(_param_groups(params), **adamw), params
    opt = MasterWeightAdamW(params, **adamw)
    return opt, opt.masters


def _param_groups(params: list[nn.Parameter]) -> list[Any]:
    """``params`` as they are, or, when FSDP sharded some of them (DTensors)
    and left others plain (those of no FSDP unit), one group of each kind:
    the fused and foreach AdamW kernels step a whole group at once and refuse
    one that mixes the two ("got mixed torch.Tensor and DTensor"). Same
    hyperparameters in both; FSDP checkpoints key the state by name."""
    from torch.distributed.tensor import DTensor

    sharded = [p for p in params if isinstance(p, DTensor)]
    plain = [p for p in params if not isinstance(p, DTensor)]
    if not sharded or not plain:
        return params
    return [{"params": sharded}, {"params": plain}]


def collect_grads(optimizer: torch.optim.Optimizer) -> None:
    """Finish moving gradients onto an optimizer's masters (no-op for plain AdamW)."""
    if isinstance(optimizer, MasterWeights):
        optimizer.collect_grads()
