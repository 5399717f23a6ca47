"""Activation checkpointing of the update (ript_core.policy.activation_checkpointing):
the same log-probs and gradients, fewer bytes kept for backward."""

from __future__ import annotations

import pytest
import torch

from ript_core.policy.activation_checkpointing import (
    activation_checkpointing,
    frozen_view,
    set_activation_checkpointing,
)
from ript_core.policy.config import LoraSettings

from .conftest import make_inputs, tiny_policy


def _chain(policy, batch):
    gen = torch.Generator().manual_seed(0)
    return policy.sample(batch, "sde", generator=gen)


def _saved_bytes_and_grads(policy, batch, out):
    """log_prob + backward; bytes autograd kept (each storage once) and the grads."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    policy.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logp = policy.log_prob(batch, out.chain, out.stochastic_step)
    (logp * torch.linspace(-1, 1, len(logp))).sum().backward()
    grads = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    return logp.detach(), sum(storages.values()), grads


@pytest.mark.parametrize("strategy", ["full", "expert", "lora"])
def test_checkpointed_update_equals_the_plain_one_and_keeps_less(strategy):
    kw = {"lora": LoraSettings(rank=4, alpha=8.0)} if strategy == "lora" else {}
    policy = tiny_policy(seed=1, strategy=strategy, **kw)
    batch = policy.preprocess(make_inputs(4, seed=2))
    out = _chain(policy, batch)
    logp, plain_bytes, grads = _saved_bytes_and_grads(policy, batch, out)

    set_activation_checkpointing(policy.model, True)
    assert activation_checkpointing(policy.model)
    logp_c, ckpt_bytes, grads_c = _saved_bytes_and_grads(policy, batch, out)
    torch.testing.assert_close(logp_c, logp, rtol=0, atol=1e-6)
    assert grads_c.keys() == grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads_c[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)
    # only the layers' inputs stay; their insides are recomputed in backward
    print(f"{strategy}: saved {plain_bytes} -> {ckpt_bytes} bytes")
    assert ckpt_bytes < 0.5 * plain_bytes, (ckpt_bytes, plain_bytes)

    # sampling through the checkpointed layers (no grad) is unchanged too
    again = _chain(policy, batch)
    torch.testing.assert_close(again.chain, out.chain, rtol=0, atol=1e-6)
    set_activation_checkpointing(policy.model, False)
    assert not activation_checkpointing(policy.model)
    # (storages shared by several saved tensors make the count approximate)
    assert _saved_bytes_and_grads(policy, batch, out)[1] == pytest.approx(plain_bytes, rel=0.05)


def test_bc_loss_under_checkpointing_has_the_same_gradients():
    policy = tiny_policy(seed=4)
    batch = policy.preprocess(make_inputs(3, seed=5))
    actions = torch.randn(3, policy.chunk_size, 3, generator=torch.Generator().manual_seed(6))

    def grads():
        policy.zero_grad(set_to_none=True)
        loss = policy.bc_loss(batch, actions, generator=torch.Generator().manual_seed(7))
        loss.backward()
        return loss.detach(), {
            n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None
        }

    loss, plain = grads()
    set_activation_checkpointing(policy.model, True)
    loss_c, ckpt = grads()
    torch.testing.assert_close(loss_c, loss, rtol=0, atol=1e-7)
    for name in plain:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_recomputation_runs_with_the_sdpa_kernels_of_the_forward():
    """The policy restricts SDPA's kernels around ``log_prob`` only; backward
    (where checkpointed layers recompute) runs outside that context. On the
    H100 the recomputation then picked cuDNN instead of the forward's kernel
    and torch raised CheckpointError. Each recomputation must see the
    switches its forward saw."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    policy = tiny_policy(seed=1)
    batch = policy.preprocess(make_inputs(2, seed=2))
    out = _chain(policy, batch)
    seen: list[tuple[bool, bool]] = []
    layer = policy.model.model.dit.layers[0]
    original = layer.forward

    def spy(*args, **kwargs):
        b = torch.backends.cuda
        seen.append((b.cudnn_sdp_enabled(), b.math_sdp_enabled()))
        return original(*args, **kwargs)

    layer.forward = spy
    set_activation_checkpointing(policy.model, True)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            logp = policy.log_prob(batch, out.chain, out.stochastic_step)
        assert torch.backends.cuda.cudnn_sdp_enabled()  # restored outside
        logp.sum().backward()
    finally:
        set_activation_checkpointing(policy.model, False)
        layer.forward = original
    # one call in the forward (all denoising steps are rows of one expert
    # pass), one in its recomputation
    assert seen == [(False, True)] * 2


def test_frozen_view_serves_several_suffix_rows_per_prefix_row():
    """``log_prob`` scores every denoising step of a sample as rows
    ``b * r + j`` of one expert pass: each row must see its own sample's
    prefix before its own suffix, and the prefix gradient sums over its rows."""
    from transformers.cache_utils import DynamicCache

    b, r, p, s, d = 3, 4, 5, 2, 6
    gen = torch.Generator().manual_seed(0)
    prefix_k = torch.randn(b, 1, p, d, generator=gen, requires_grad=True)
    prefix_v = torch.randn(b, 1, p, d, generator=gen)
    cache = DynamicCache()
    cache.update(prefix_k, prefix_v, 0)
    view = frozen_view(cache, repeats=r)
    assert view.get_seq_length() == p
    suffix_k = torch.randn(b * r, 1, s, d, generator=gen)
    suffix_v = torch.randn(b * r, 1, s, d, generator=gen)
    keys, values = view.layers[0].update(suffix_k, suffix_v)
    assert keys.shape == values.shape == (b * r, 1, p + s, d)
    for row in range(b * r):
        torch.testing.assert_close(keys[row], torch.cat([prefix_k[row // r], suffix_k[row]], -2))
        torch.testing.assert_close(values[row], torch.cat([prefix_v[row // r], suffix_v[row]], -2))
    weights = torch.randn(b * r, 1, p, d, generator=gen)
    (keys[:, :, :p] * weights).sum().backward()
    torch.testing.assert_close(prefix_k.grad, weights.view(b, r, 1, p, d).sum(1))
    # a view of a view keeps the recorded prefix, not the repeated one
    assert frozen_view(view, repeats=2).layers[0].prefix is cache.layers[0]
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        frozen_view(cache, repeats=0)
