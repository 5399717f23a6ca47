"""Which fused attention kernels the policy's SDPA calls may use on CUDA.

Every PI0 attention call passes a boolean mask (prefix padding, the suffix's
block structure), so FlashAttention is never eligible and torch picks among
cuDNN, memory-efficient and math kernels.

- **Without gradients** (sampling, evaluation) cuDNN is switched off: at
  the expert's small shapes its per-call cost outweighed all the expert's
  matmuls.
- **With gradients** (the RIPT update's ``log_prob``, BC) on a batch of at
  least :data:`CUDNN_MIN_TRAINING_BATCH` samples cuDNN is allowed: its fused
  backward is several times faster than the memory-efficient kernel's.
  Below that the update is host-bound and cuDNN's extra per-call work makes
  it slower.

The figures are in docs/policy.md ("Measurements behind the fast path").

Sampling and re-scoring therefore round differently in bf16 (as they do
anyway: the re-scoring's matmuls have other shapes); checkpointed layers are
recomputed with their forward's kernels (ript_core.policy.activation_checkpointing).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

#: Without gradients, in order of preference; cuDNN's left out (module docstring).
CUDA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

#: With gradients on a batch of at least :data:`CUDNN_MIN_TRAINING_BATCH`.
TRAINING_CUDA_BACKENDS = [SDPBackend.CUDNN_ATTENTION, *CUDA_BACKENDS]

#: Smallest batch whose gradient pass uses cuDNN attention (module docstring).
CUDNN_MIN_TRAINING_BATCH = 8

F = TypeVar("F", bound=Callable[..., Any])


_SWITCHES = {
    SDPBackend.FLASH_ATTENTION: torch.backends.cuda.flash_sdp_enabled,
    SDPBackend.EFFICIENT_ATTENTION: torch.backends.cuda.mem_efficient_sdp_enabled,
    SDPBackend.MATH: torch.backends.cuda.math_sdp_enabled,
    SDPBackend.CUDNN_ATTENTION: torch.backends.cuda.cudnn_sdp_enabled,
}


_UPDATE_KERNELS: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ript_update_kernels", default=False
)


@contextlib.contextmanager
def update_kernels() -> Iterator[None]:
    """Choose kernels as a gradient pass would, without gradients: the old
    log-probs a PPO update is measured against are recomputed with exactly
    the update's arithmetic (ript_core.rl.ript, ``update.old_log_prob``)."""
    token = _UPDATE_KERNELS.set(True)
    try:
        yield
    finally:
        _UPDATE_KERNELS.reset(token)


def allowed_backends() -> list[SDPBackend]:
    """The SDPA backends allowed right now (inside :func:`attention_backends`,
    any ``sdpa_kernel`` context, or none): what to restore elsewhere with
    ``sdpa_kernel(allowed_backends())``."""
    return [backend for backend, enabled in _SWITCHES.items() if enabled()]


@contextlib.contextmanager
def attention_backends(device: torch.device, training: bool = False) -> Iterator[None]:
    """Restrict SDPA to :data:`CUDA_BACKENDS` (``training``:
    :data:`TRAINING_CUDA_BACKENDS`) on a CUDA device; nothing elsewhere."""
    if device.type != "cuda":
        yield
        return
    with sdpa_kernel(TRAINING_CUDA_BACKENDS if training else CUDA_BACKENDS):
        yield


def with_attention_backends(method: F) -> F:
    """Decorate a method of an object with a ``device`` (the policy, its fast
    sampler) with :func:`attention_backends`; ``training`` when grad mode is
    on (or :func:`update_kernels` is entered) and the first argument (the
    batch) holds at least :data:`CUDNN_MIN_TRAINING_BATCH` samples."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        batch = args[0] if args else None
        training = (
            (torch.is_grad_enabled() or _UPDATE_KERNELS.get())
            and hasattr(batch, "__len__")
            and len(batch) >= CUDNN_MIN_TRAINING_BATCH
        )
        with attention_backends(self.device, training):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
