"""The prefix (images + prompt) goes through the VLM once per sample and call;
every denoising step reuses its KV cache (issue 3, item 5)."""

from __future__ import annotations

import pytest
import torch

from tests.policy.conftest import make_inputs, tiny_policy


def count_forwards(*modules: torch.nn.Module) -> list[int]:
    counts = [0] * len(modules)
    for i, module in enumerate(modules):

        def hook(*_: object, i: int = i) -> None:
            counts[i] += 1

        module.register_forward_hook(hook)
    return counts


@pytest.mark.parametrize("scheme", ["all", "one"])
def test_prefix_is_encoded_once_and_reused_by_every_step(scheme):
    policy = tiny_policy(sde_scheme=scheme, num_steps=4)
    m = policy.model.model
    batch = policy.preprocess(make_inputs(3))
    counts = count_forwards(m.vlm, m.vlm.vision_tower, m.dit)

    out = policy.sample(batch, "sde", generator=torch.Generator().manual_seed(0))
    # one VLM pass (one vision pass) for the whole batch, one expert pass per step
    assert counts == [1, 1, 4]

    counts[:] = [0, 0, 0]
    policy.log_prob(batch, out.chain, out.stochastic_step).sum().backward()
    # re-scoring: the prefix once again; one expert pass for all scored steps
    # (the chain is given, so the steps are rows of one batch)
    assert counts == [1, 1, 1]
