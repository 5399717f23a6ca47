"""Gemma's RMSNorm through torch's fused kernel (ript_core.policy.fast.norms)."""

from __future__ import annotations

import pytest
import torch
from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

from ript_core.policy.fast.norms import use_fused_rms_norm

from .conftest import make_inputs, tiny_policy


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_norm_equals_transformers_gemma_rms_norm(dtype):
    torch.manual_seed(0)
    plain, fused = GemmaRMSNorm(64, eps=1e-6), GemmaRMSNorm(64, eps=1e-6)
    with torch.no_grad():
        plain.weight.normal_()
        fused.weight.copy_(plain.weight)
    assert use_fused_rms_norm(fused) == 1
    x = (3 * torch.randn(2, 5, 64)).to(dtype).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    out, ref = fused(x), plain(x2)
    assert out.dtype == ref.dtype == dtype
    # float32: rounding of a different reduction order; bf16: one ulp at most
    tol = {"atol": 1e-6, "rtol": 1e-6} if dtype == torch.float32 else {"atol": 0, "rtol": 8e-3}
    torch.testing.assert_close(out, ref, **tol)
    g = torch.linspace(-1, 1, out.numel()).view_as(out).to(dtype)
    (out * g).sum().backward()
    (ref * g).sum().backward()
    torch.testing.assert_close(fused.weight.grad, plain.weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x.grad.float(), x2.grad.float(), atol=1e-2, rtol=1e-2)


def test_policy_routes_every_gemma_norm_and_samples_the_same():
    fused = tiny_policy(seed=3)
    plain = tiny_policy(seed=3, fused_norms=False)
    norms = [m for m in fused.model.modules() if type(m).__name__ == "GemmaRMSNorm"]
    assert norms and all("fused_gemma_rms_norm" in repr(m.forward) for m in norms)
    assert not any(
        "fused" in repr(m.forward)
        for m in plain.model.modules()
        if type(m).__name__ == "GemmaRMSNorm"
    )
    batch = fused.preprocess(make_inputs(3, seed=4))
    outs = []
    for policy in (fused, plain):
        gen = [torch.Generator().manual_seed(i) for i in range(3)]
        out = policy.sample(batch, "sde", generator=gen)
        outs.append((out.chain, out.log_prob, policy.log_prob(batch, out.chain).detach()))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)
    # and back: transformers' own forward again (what benches call "as shipped")
    assert use_fused_rms_norm(fused.model, on=False) == len(norms)
    assert not any("forward" in vars(m) for m in norms)
