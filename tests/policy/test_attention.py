"""The policy's SDPA kernel choice (ript_core.policy.attention)."""

from __future__ import annotations

import torch

from ript_core.policy.attention import (
    CUDNN_MIN_TRAINING_BATCH,
    attention_backends,
    with_attention_backends,
)


def _enabled() -> tuple[bool, bool, bool, bool]:
    b = torch.backends.cuda
    return (
        b.cudnn_sdp_enabled(),
        b.flash_sdp_enabled(),
        b.mem_efficient_sdp_enabled(),
        b.math_sdp_enabled(),
    )


def test_cuda_calls_run_without_cudnn_attention_and_restore_the_switches():
    before = _enabled()
    with attention_backends(torch.device("cuda")):
        assert _enabled() == (False, True, True, True)
    assert _enabled() == before
    with attention_backends(torch.device("cpu")):
        assert _enabled() == before


def test_policy_methods_take_the_device_from_the_policy():
    class Fake:
        def __init__(self, device: str) -> None:
            self.device = torch.device(device)

        @with_attention_backends
        def call(self, batch: object = None) -> bool:
            return torch.backends.cuda.cudnn_sdp_enabled()

    with torch.no_grad():
        assert Fake("cuda").call() is False
    assert Fake("cuda").call() is False  # grad mode, but no batch
    assert Fake("cpu").call() == torch.backends.cuda.cudnn_sdp_enabled()


def test_gradient_passes_on_large_batches_may_use_cudnn_attention():
    """The update's backward: cuDNN's fused kernel is the fast one there
    (bench/gpu_update_profile.py); sampling and small batches keep it off."""
    with attention_backends(torch.device("cuda"), training=True):
        assert _enabled() == (True, True, True, True)

    class Fake:
        device = torch.device("cuda")

        @with_attention_backends
        def call(self, batch: list[int]) -> tuple[bool, bool, bool, bool]:
            return _enabled()

    big, small = [0] * CUDNN_MIN_TRAINING_BATCH, [0] * (CUDNN_MIN_TRAINING_BATCH - 1)
    assert Fake().call(big) == (True, True, True, True)
    assert Fake().call(small) == (False, True, True, True)
    with torch.no_grad():
        assert Fake().call(big) == (False, True, True, True)
