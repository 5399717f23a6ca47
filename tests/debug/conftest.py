"""Fixtures for the debug/parity tests: a tiny policy with *informative* weights.

transformers initialises RMSNorm scales to 0, biases to 0 and linears with
std 0.02, so a freshly built tiny PI0 is nearly a constant function: a wrong
``1 + scale``, a missing bias or a swapped sin/cos would move its output by
less than float noise and a parity test would pass vacuously. Every
parameter is therefore redrawn with a scale that keeps activations O(1).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ript_core.envs.interfaces import PolicyInput
from ript_core.policy import PI0Policy

PROMPTS = ["pick up the red block", "put the green cube in the bowl"]


@pytest.fixture(autouse=True)
def _fp32_highest():
    torch.set_num_threads(2)
    # fp32 parity needs TF32 off (parity checklist B11).
    assert torch.get_float32_matmul_precision() == "highest"
    yield


@torch.no_grad()
def randomise_(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)

    def normal_(t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float64) * std + mean)

    for module in model.modules():
        if isinstance(module, nn.Linear):
            normal_(module.weight, module.in_features**-0.5)
            if module.bias is not None:
                normal_(module.bias, 0.2)
        elif isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            normal_(module.weight, fan_in**-0.5)
            normal_(module.bias, 0.2)
        elif isinstance(module, nn.Embedding):
            normal_(module.weight, 0.5)
        elif isinstance(module, nn.LayerNorm):
            normal_(module.weight, 0.2, mean=1.0)
            normal_(module.bias, 0.2)
        elif type(module).__name__.endswith("RMSNorm"):
            normal_(module.weight, 0.3)  # Gemma multiplies by (1 + weight)


def parity_policy(seed: int = 0, **overrides) -> PI0Policy:
    kwargs = {"action_dim": 7, "state_dim": 8}
    kwargs.update(overrides)
    policy = PI0Policy.from_preset("pi0-tiny", prompts=PROMPTS, seed=seed, **kwargs)
    randomise_(policy.model, seed + 1000)
    return policy


def parity_inputs(seed: int = 0) -> list[PolicyInput]:
    """Two observations: different prompt lengths (padding), the second without
    a wrist camera (a masked slot), non-square images (resize with padding)."""
    rng = np.random.default_rng(seed)
    return [
        PolicyInput(
            images={
                "base_0_rgb": rng.integers(0, 256, (64, 80, 3), dtype=np.uint8),
                "left_wrist_0_rgb": rng.integers(0, 256, (56, 56, 3), dtype=np.uint8),
            },
            state=rng.normal(size=8).astype(np.float32),
            prompt=PROMPTS[0],
        ),
        PolicyInput(
            images={"base_0_rgb": rng.integers(0, 256, (56, 70, 3), dtype=np.uint8)},
            state=rng.normal(size=8).astype(np.float32),
            prompt=PROMPTS[1],
        ),
    ]
