"""The expert's fused projections (fused_projections.py) in the fast sampler:
the same chunks as the unfused layers and the eager loop, weights that are
never stale, and a swap that leaves everything else as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ript_core.policy.fast.compiled_layers as cl
from ript_core.policy.fast.fused_projections import ExpertFusion, FusedAttention, FusedMLP, fusable
from ript_core.policy.fast.sampler import FastSampler

from .conftest import make_inputs, tiny_policy


def _gens(n: int, seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def _sample(sampler, policy, batch, seed=10):
    level = policy.config.noise_level
    return sampler.sample(batch, "sde", _gens(len(batch), seed), None, level, policy.num_steps)


def test_fused_chunks_equal_the_unfused_and_the_eager_loop(policy):
    batch = policy.preprocess(make_inputs(3, seed=1))
    fused = _sample(FastSampler(policy, use_graphs=False, fuse_projections=True), policy, batch)
    plain = _sample(FastSampler(policy, use_graphs=False, fuse_projections=False), policy, batch)
    eager = policy.sample(batch, "sde", generator=_gens(3, 10))
    assert (fused.chain - plain.chain).abs().max().item() <= 1e-5
    assert (fused.chain - eager.chain).abs().max().item() <= 1e-5
    assert (fused.log_prob - eager.log_prob).abs().max().item() <= 1e-3
    assert (fused.chain - fused.chain[:, :1]).abs().max().item() > 1e-2  # it did move


def test_off_by_default_without_graphs_and_every_layer_fused_when_on(policy):
    assert FastSampler(policy, use_graphs=False).fuse_projections is False
    sampler = FastSampler(policy, use_graphs=False, fuse_projections=True)
    _sample(sampler, policy, policy.preprocess(make_inputs(1)))
    dit = policy.model.model.dit
    assert sampler._fusion is not None and sampler._fusion.layers == list(range(len(dit.layers)))
    # fused rows: q, k, v stacked; gate and up stacked
    attn, mlp = dit.layers[0].self_attn, dit.layers[0].mlp
    q, k, v = attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight
    assert torch.equal(sampler._fusion.qkv[0], torch.cat([q, k, v]))
    assert torch.equal(
        sampler._fusion.gate_up[0], torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])
    )


def test_weights_changed_behind_autograds_back_are_used_by_the_next_chunk(policy):
    """The fused copies are rewritten at the start of every chunk, so even a
    write that bumps no version counter (``.data``, as an 8-bit optimizer's
    kernel writes parameter memory) is seen."""
    sampler = FastSampler(policy, use_graphs=False, fuse_projections=True)
    batch = policy.preprocess(make_inputs(2, seed=4))
    before = _sample(sampler, policy, batch)
    mlp = policy.model.model.dit.layers[1].mlp
    with torch.no_grad():
        mlp.up_proj.weight.data.mul_(3.0)
        policy.model.model.dit.layers[0].self_attn.k_proj.weight.data.add_(0.05)
    after = _sample(sampler, policy, batch)
    eager = policy.sample(batch, "sde", generator=_gens(2, 10))
    assert (after.chain - before.chain).abs().max().item() > 1e-3
    assert (after.chain - eager.chain).abs().max().item() <= 1e-5


def test_the_swap_keeps_parameters_and_is_undone_also_on_error(policy):
    dit = policy.model.model.dit
    fusion = ExpertFusion(dit)
    fusion.refresh()
    params = [id(p) for p in dit.parameters()]
    attn, mlp = dit.layers[0].self_attn, dit.layers[0].mlp
    with fusion.installed():
        assert isinstance(dit.layers[0].self_attn, FusedAttention)
        assert isinstance(dit.layers[0].mlp, FusedMLP)
        assert [id(p) for p in dit.parameters()] == params  # the originals are children
    assert dit.layers[0].self_attn is attn and dit.layers[0].mlp is mlp
    with pytest.raises(RuntimeError, match="boom"), fusion.installed():
        raise RuntimeError("boom")
    assert dit.layers[0].self_attn is attn and dit.layers[0].mlp is mlp


class _AdapterLinear(nn.Linear):
    """A wrapped projection (what an adapter library puts there)."""


def test_layers_the_swap_would_bypass_are_left_alone():
    policy = tiny_policy()
    layers = policy.model.model.dit.layers
    assert all(fusable(layer) for layer in layers)
    handle = layers[0].mlp.register_forward_hook(lambda *_: None)  # e.g. a recorder
    old = layers[1].self_attn.q_proj
    adapter = _AdapterLinear(old.in_features, old.out_features, bias=False)
    layers[1].self_attn.q_proj = adapter
    biased = layers[-1].mlp.up_proj
    layers[-1].mlp.up_proj = nn.Linear(biased.in_features, biased.out_features, bias=True)
    try:
        fusion = ExpertFusion(policy.model.model.dit)
        assert fusion.layers == list(range(2, len(layers) - 1))
    finally:
        handle.remove()


def test_compiled_fused_sampling_then_the_compiled_unfused_update(monkeypatch):
    """Through compiled layers ("aot_eager"): the fused chunk equals the
    unfused one, and the update's compiled log-prob afterwards runs the
    original modules with the current weights -- not a graph traced through
    the swap, whose fused copies are now stale."""
    monkeypatch.setattr(cl, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    try:
        policy = tiny_policy(seed=2, num_steps=3)
        batch = policy.preprocess(make_inputs(2, seed=5))
        compiled = FastSampler(policy, use_graphs=False, compile_layers=True, fuse_projections=True)
        fused = _sample(compiled, policy, batch)
        plain = _sample(FastSampler(policy, use_graphs=False), policy, batch)
        assert (fused.chain - plain.chain).abs().max().item() <= 1e-5
        with torch.no_grad():
            for p in policy.model.model.dit.parameters():
                p.data.mul_(1.01)  # the fused copies are now stale
        eager = policy.log_prob(batch, fused.chain)
        with cl.compiled_layers(policy.model).installed(), torch.no_grad():
            logp = policy.log_prob(batch, fused.chain)
        torch.testing.assert_close(logp, eager.detach(), atol=1e-5, rtol=1e-5)
    finally:
        torch._dynamo.reset()
