"""The policy's SDPA kernel choice (ript_core.policy.attention)."""

from __future__ import annotations

import pytest
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


# ---- gqa_attention: folded GQA vs transformers' SDPA with repeated K/V -----------


def _qkv(bsz=2, heads=8, kv_heads=2, q_len=5, kv_len=9, dim=16, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(bsz, heads, q_len, dim, generator=g, dtype=dtype)
    k = torch.randn(bsz, kv_heads, kv_len, dim, generator=g, dtype=dtype)
    v = torch.randn(bsz, kv_heads, kv_len, dim, generator=g, dtype=dtype)
    return q, k, v


def _masks(bsz, heads, q_len, kv_len):
    g = torch.Generator().manual_seed(1)
    padding = torch.ones(bsz, 1, q_len, kv_len, dtype=torch.bool)
    padding[0, ..., kv_len - 3 :] = False  # a padded prompt in sample 0
    blocky = torch.rand(bsz, heads, q_len, kv_len, generator=g) > 0.3
    blocky[..., 0] = True  # no fully masked row
    additive = torch.where(padding, 0.0, float("-inf")) + 0.1 * torch.randn(
        bsz, 1, q_len, kv_len, generator=g
    )
    expanded = padding[:, :, :1].expand(bsz, 1, q_len, kv_len)  # stride-0 rows, as PI0 builds
    return {
        "none": None,
        "padding": padding,
        "per_head": blocky,
        "additive": additive,
        "expanded": expanded,
    }


@pytest.fixture(params=["fused", "matmul"])
def path(request, monkeypatch):
    from ript_core.policy import attention

    monkeypatch.setattr(attention, "MATMUL_DEVICES", ("cpu", "cuda"))
    monkeypatch.setattr(attention, "MATMUL_MAX_SCORES", 0 if request.param == "fused" else 1 << 30)
    return request.param


@pytest.mark.parametrize("mask_kind", ["none", "padding", "per_head", "additive", "expanded"])
def test_gqa_attention_equals_transformers_sdpa(path, mask_kind):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from ript_core.policy.attention import gqa_attention

    module = torch.nn.Module()
    module.num_key_value_groups = 4  # what transformers' SDPA reads to repeat K/V
    module.is_causal = False
    q, k, v = _qkv()
    mask = _masks(2, 8, 5, 9)[mask_kind]
    ours, _ = gqa_attention(module, q, k, v, mask, scaling=0.3)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3, is_causal=False)
    assert ours.shape == ref.shape == (2, 5, 8, 16)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_gqa_attention_gradients_match(path):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from ript_core.policy.attention import gqa_attention

    module = torch.nn.Module()
    module.num_key_value_groups = 8
    module.is_causal = False
    mask = _masks(2, 8, 5, 9)["padding"]
    grads = []
    for fn in (gqa_attention, sdpa_attention_forward):
        q, k, v = (t.requires_grad_() for t in _qkv(kv_heads=1))
        out, _ = fn(module, q, k, v, mask, scaling=0.25, is_causal=False)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append([t.grad for t in (q, k, v)])
    for ours, ref in zip(*grads, strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_gqa_attention_rejects_a_mask_with_a_foreign_head_count():
    from ript_core.policy.attention import gqa_attention

    q, k, v = _qkv()
    with pytest.raises(ValueError, match="3 heads for 8 query heads"):
        gqa_attention(torch.nn.Module(), q, k, v, torch.ones(2, 3, 5, 9, dtype=torch.bool))


def test_policy_with_gqa_attention_samples_and_scores_like_sdpa():
    """The whole tiny policy (8 query heads, 1 KV head): same actions, chain
    log-probs and gradients with ``attn_implementation`` sdpa and ript_gqa."""
    from tests.policy.conftest import make_inputs, tiny_policy

    results = []
    for impl in ("sdpa", "ript_gqa"):
        policy = tiny_policy(attn_implementation=impl)
        impls = {
            m.config._attn_implementation
            for m in policy.model.modules()
            if type(m).__name__ == "GemmaAttention"
        }
        assert impls == {impl}
        batch = policy.preprocess(make_inputs(3))
        gen = [torch.Generator().manual_seed(i) for i in range(3)]
        out = policy.sample(batch, "sde", generator=gen)
        logp = policy.log_prob(batch, out.chain)
        logp.sum().backward()
        grad = torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None])
        results.append((out.chain, out.log_prob, logp.detach(), grad))
    for ours, ref in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_gqa_attention_takes_the_fused_kernel_under_autograd(monkeypatch):
    """The matmul path keeps float32 scores; with gradients the fused kernel runs."""
    from ript_core.policy import attention

    monkeypatch.setattr(attention, "MATMUL_DEVICES", ("cpu",))
    calls = []
    sdpa = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(
        attention.F,
        "scaled_dot_product_attention",
        lambda *a, **k: calls.append(1) or sdpa(*a, **k),
    )
    q, k, v = _qkv()
    with torch.no_grad():
        attention.gqa_attention(torch.nn.Module(), q, k, v, None)
    assert calls == []
    attention.gqa_attention(torch.nn.Module(), q.requires_grad_(), k, v, None)
    assert calls == [1]
