"""The policy's SDPA kernel choice (ript_core.policy.attention)."""

from __future__ import annotations

import torch

from ript_core.policy.attention import attention_backends, with_attention_backends


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
        def call(self) -> bool:
            return torch.backends.cuda.cudnn_sdp_enabled()

    assert Fake("cuda").call() is False
    assert Fake("cpu").call() == torch.backends.cuda.cudnn_sdp_enabled()
