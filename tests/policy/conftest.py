"""Shared tiny-policy fixtures: everything here runs on 2 CPU threads in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ript_core.envs.interfaces import PolicyInput
from ript_core.policy import PI0Policy

COLOURS = ("red", "green", "blue", "yellow")
PROMPTS = [f"pick up the {c} block" for c in COLOURS]


@pytest.fixture(autouse=True)
def _fp32_highest():
    torch.set_num_threads(2)
    # fp32 parity needs TF32 off (parity checklist B11): fail loudly if anything flipped it.
    assert torch.get_float32_matmul_precision() == "highest"
    yield


def make_inputs(n: int, seed: int = 0, state_dim: int = 3, wrist: bool = True) -> list[PolicyInput]:
    """Random toy-like observations: odd image sizes, varied prompts and states."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        images = {"base_0_rgb": rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)}
        if wrist:
            images["left_wrist_0_rgb"] = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        out.append(
            PolicyInput(
                images=images,
                state=rng.normal(size=state_dim).astype(np.float32),
                prompt=PROMPTS[i % len(PROMPTS)],
            )
        )
    return out


def tiny_policy(seed: int = 0, **overrides) -> PI0Policy:
    kwargs = {"action_dim": 3, "state_dim": 3, "logp_horizon": 5}
    kwargs.update(overrides)
    return PI0Policy.from_preset("pi0-tiny", prompts=PROMPTS, seed=seed, **kwargs)


@pytest.fixture
def policy() -> PI0Policy:
    return tiny_policy()
