"""Which fused attention kernels the policy's SDPA calls may use on CUDA.

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
from torch.nn.attention import SDPBackend, sdpa_kernel

#: In order of preference; cuDNN's left out (module docstring).
CUDA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

F = TypeVar("F", bound=Callable[..., Any])


_SWITCHES = {
    SDPBackend.FLASH_ATTENTION: torch.backends.cuda.flash_sdp_enabled,
    SDPBackend.EFFICIENT_ATTENTION: torch.backends.cuda.mem_efficient_sdp_enabled,
    SDPBackend.MATH: torch.backends.cuda.math_sdp_enabled,
    SDPBackend.CUDNN_ATTENTION: torch.backends.cuda.cudnn_sdp_enabled,
}


def allowed_backends() -> list[SDPBackend]:
    """The SDPA backends allowed right now (inside :func:`attention_backends`,
    any ``sdpa_kernel`` context, or none): what to restore elsewhere with
    ``sdpa_kernel(allowed_backends())``."""
    return [backend for backend, enabled in _SWITCHES.items() if enabled()]


@contextlib.contextmanager
def attention_backends(device: torch.device) -> Iterator[None]:
    """Restrict SDPA to :data:`CUDA_BACKENDS` on a CUDA device; nothing elsewhere."""
    if device.type != "cuda":
        yield
        return
    with sdpa_kernel(CUDA_BACKENDS):
        yield


def with_attention_backends(method: F) -> F:
    """Decorate a method of an object with a ``device`` (the policy, its fast
    sampler) with :func:`attention_backends`."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with attention_backends(self.device):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
