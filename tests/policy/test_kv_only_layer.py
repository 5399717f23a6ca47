"""The prefix's last Gemma layer reduced to its keys/values (kv_only_layer.py)."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from ript_core.policy.fast.kv_only_layer import KVOnlyLayer, full_last_layer, last_layer_kv_only
from tests.policy.conftest import tiny_policy


def _prefix_cache(lm: torch.nn.Module, embeds: torch.Tensor, positions: torch.Tensor):
    cache = DynamicCache(config=lm.config)
    with torch.no_grad():
        lm(inputs_embeds=embeds, position_ids=positions, cache=cache, use_cache=True)
    return [(layer.keys, layer.values) for layer in cache.layers]


def test_cache_equals_the_full_layers_and_the_last_mlp_never_runs():
    policy = tiny_policy()
    lm = policy.model.model.vlm.language_model
    gen = torch.Generator().manual_seed(0)
    embeds = torch.randn(3, 7, lm.config.hidden_size, generator=gen)
    positions = torch.arange(1, 8).expand(3, -1) + torch.tensor([[0], [2], [5]])
    full = _prefix_cache(lm, embeds, positions)

    ran = []
    last = lm.layers[-1]
    hooks = [
        last.mlp.register_forward_hook(lambda *_: ran.append("mlp")),
        last.self_attn.o_proj.register_forward_hook(lambda *_: ran.append("o_proj")),
        lm.layers[0].mlp.register_forward_hook(lambda *_: ran.append("first mlp")),
    ]
    params = list(lm.parameters())
    with last_layer_kv_only(lm):
        assert isinstance(lm.layers[-1], KVOnlyLayer)
        # the same tensors in the same order (the sampler's fingerprint, an optimizer)
        during = list(lm.parameters())
        assert all(a is b for a, b in zip(during, params, strict=True))
        reduced = _prefix_cache(lm, embeds, positions)
    for hook in hooks:
        hook.remove()
    assert ran == ["first mlp"]
    assert lm.layers[-1] is last
    assert len(full) == len(reduced) == lm.config.num_hidden_layers
    for (k, v), (k2, v2) in zip(full, reduced, strict=True):
        # same modules, same ops, float32: equal, RoPE included (positions differ per row)
        assert torch.equal(k, k2) and torch.equal(v, v2)


def test_the_full_layer_is_restored_after_an_error_and_misuse_is_refused():
    policy = tiny_policy()
    lm = policy.model.model.vlm.language_model
    last = lm.layers[-1]
    with pytest.raises(RuntimeError, match="boom"), last_layer_kv_only(lm):
        raise RuntimeError("boom")
    assert lm.layers[-1] is last
    with pytest.raises(ValueError, match="fill a prefix cache"):
        KVOnlyLayer(last)(torch.zeros(1, 2, lm.config.hidden_size))


def test_full_last_layer_turns_the_swap_off_for_tools_that_read_hidden_states():
    policy = tiny_policy()
    lm = policy.model.model.vlm.language_model
    last = lm.layers[-1]
    with full_last_layer(), last_layer_kv_only(lm):
        assert lm.layers[-1] is last
    with last_layer_kv_only(lm):
        assert isinstance(lm.layers[-1], KVOnlyLayer)
