"""SigLIP's fc1 bias moved next to the activation (siglip_mlp.py)."""

from __future__ import annotations

import torch
from transformers.models.siglip.modeling_siglip import SiglipMLP

from ript_core.policy.fast import compiled_layers as cl
from ript_core.policy.fast.siglip_mlp import bias_in_activation
from tests.policy.conftest import tiny_policy


def test_same_outputs_through_the_override_and_restored_after():
    policy = tiny_policy()
    mlps = [m for m in policy.model.modules() if isinstance(m, SiglipMLP)]
    assert len(mlps) == policy.model.config.vlm_config.vision_config.num_hidden_layers
    x = torch.randn(2, 5, mlps[0].fc1.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = [m(x) for m in mlps]
        calls = []
        with bias_in_activation(policy.model):
            for m in mlps:
                hook = m.fc1.register_forward_hook(lambda *_: calls.append("fc1 module"))
                out = m(x)
                hook.remove()
                # float32: only the summation order of the bias differs
                torch.testing.assert_close(out, plain[mlps.index(m)], atol=1e-6, rtol=1e-5)
                assert not torch.equal(out, torch.zeros_like(out))
        assert calls == []  # fc1 ran as a bare matmul, not through its module
        assert all("forward" not in m.__dict__ for m in mlps)
        assert all(torch.equal(m(x), p) for m, p in zip(mlps, plain, strict=True))


def test_installed_with_the_compiled_layers_only():
    policy = tiny_policy()
    mlp = next(m for m in policy.model.modules() if isinstance(m, SiglipMLP))
    with cl.compiled_layers(policy.model).installed():  # torch.compile is lazy: no compile here
        assert "forward" in mlp.__dict__
    assert "forward" not in mlp.__dict__
