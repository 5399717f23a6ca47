"""The static-cache sampler (fast_sampler.py) against the eager loop, on CPU.

On CPU the chunk function runs without CUDA graphs; what a graph adds is
replay of the same kernels, so these tests pin the maths: masks, positions,
the static KV cache, the precomputed time embeddings, the RNG order.
"""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask

from ript_core.policy.fast_sampler import (
    FastSampler,
    PrefixKVCache,
    prefix_attention_mask,
    suffix_attention_mask,
)
from tests.policy.conftest import make_inputs, tiny_policy
from tests.policy.test_sampling import reference_actions


def _fast(policy, batch, mode, generator=None, noise=None, level=None):
    level = policy.config.noise_level if level is None else level
    return FastSampler(policy, use_graphs=False).sample(
        batch, mode, generator, noise, level, policy.num_steps
    )


def _gens(n: int, seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def test_masks_equal_transformers(policy):
    """Our tensor-op masks are the ones transformers' mask factory builds
    (prefix: PaliGemma with token_type_ids 0; suffix: PI0Model.forward's
    block mask) -- including padded prompt tokens."""
    batch = policy.preprocess(make_inputs(3))
    kw = policy.model_inputs(batch)
    am = kw["attention_mask"]
    assert not bool(am.all()), "the test needs padding"
    cfg = policy.model.config
    p, s = am.shape[1], policy.chunk_size + 1
    embeds = torch.zeros(3, p, 4)
    ref_prefix = create_causal_mask(
        config=cfg.vlm_config.text_config,
        inputs_embeds=embeds,
        attention_mask=am,
        cache=None,
        position_ids=am.cumsum(-1) - 1,
        block_sequence_ids=torch.zeros_like(am),
    )
    assert torch.equal(ref_prefix.expand(3, 1, p, p), prefix_attention_mask(am))

    cache = DynamicCache(config=cfg.dit_config)
    layers = cfg.dit_config.num_hidden_layers
    kv = torch.zeros(3, cfg.dit_config.num_key_value_heads, p, cfg.dit_config.head_dim)
    for i in range(layers):
        cache.update(kv, kv, i)
    blocks = torch.cat([torch.zeros(p + 1, dtype=torch.long), torch.ones(s - 1, dtype=torch.long)])
    ref_suffix = create_causal_mask(
        config=cfg.dit_config,
        inputs_embeds=torch.zeros(3, s, 4),
        attention_mask=torch.cat([am, torch.ones(3, s, dtype=am.dtype)], dim=1),
        cache=cache,
        block_sequence_ids=blocks[None].repeat(3, 1),
    )
    assert torch.equal(ref_suffix.expand(3, 1, s, p + s), suffix_attention_mask(am, s))


def test_prefix_cache_writes_in_place():
    cache = PrefixKVCache(2, 1, 1, 3, 2, 4, torch.float32, torch.device("cpu"))
    addr = cache.keys[1].data_ptr()
    k, v = cache.update(torch.ones(1, 1, 3, 4), torch.ones(1, 1, 3, 4) * 2, 1)
    assert k.shape[-2] == 3 and bool((v == 2).all())
    cache.offset = 3
    k, _ = cache.update(torch.full((1, 1, 2, 4), 5.0), torch.zeros(1, 1, 2, 4), 1)
    assert k.shape[-2] == 5 and bool((k[:, :, 3:] == 5).all()) and bool((k[:, :, :3] == 1).all())
    assert cache.keys[1].data_ptr() == addr and cache.get_seq_length() == 3


def test_ode_equals_eager_and_transformers(policy):
    batch = policy.preprocess(make_inputs(4))
    noise = torch.randn(
        4, policy.chunk_size, policy.max_action_dim, generator=torch.Generator().manual_seed(5)
    )
    fast = _fast(policy, batch, "ode", noise=noise)
    eager = policy.sample(batch, "ode", noise=noise)
    assert (fast.actions - eager.actions).abs().max().item() <= 1e-5
    assert (fast.chain - eager.chain).abs().max().item() <= 1e-5
    assert torch.count_nonzero(fast.log_prob) == 0
    ref = reference_actions(policy, batch, noise)
    # transformers embeds float32 t; ours float64 (precision.py): close, not equal
    assert (fast.actions - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("scheme", ["all", "one"])
def test_sde_chain_and_log_prob_equal_eager(scheme):
    policy = tiny_policy(sde_scheme=scheme)
    batch = policy.preprocess(make_inputs(3, seed=1))
    fast = _fast(policy, batch, "sde", generator=_gens(3, 10))
    eager = policy.sample(batch, "sde", generator=_gens(3, 10))
    assert (fast.chain - eager.chain).abs().max().item() <= 1e-5
    assert (fast.log_prob - eager.log_prob).abs().max().item() <= 1e-3
    assert torch.count_nonzero(fast.log_prob) == 3
    if scheme == "one":
        assert torch.equal(fast.stochastic_step, eager.stochastic_step)
    else:
        assert fast.stochastic_step is None
    # re-scoring the fast chain with the eager log_prob gives the recorded value
    with torch.no_grad():
        rescored = policy.log_prob(batch, fast.chain, fast.stochastic_step)
    assert (rescored - fast.log_prob).abs().max().item() <= 1e-3


def test_per_sample_generators_independent_of_batch(policy):
    """Sample 1's chunk from its own generator is the same alone or in a batch."""
    batch = policy.preprocess(make_inputs(3, seed=2))
    full = _fast(policy, batch, "sde", generator=_gens(3, 20))
    alone = _fast(policy, batch.select([1]), "sde", generator=_gens(3, 20)[1:2])
    assert (full.chain[1] - alone.chain[0]).abs().max().item() <= 1e-5


def test_reused_buffers_do_not_leak_between_chunks(policy):
    """A second chunk through the same (cached) signature gives its own result."""
    sampler = FastSampler(policy, use_graphs=False)
    a = policy.preprocess(make_inputs(2, seed=3))
    b = policy.preprocess(make_inputs(2, seed=4))
    level, steps = policy.config.noise_level, policy.num_steps
    out_a = sampler.sample(a, "sde", _gens(2, 30), None, level, steps)
    chain_a = out_a.chain.clone()
    sampler.sample(b, "sde", _gens(2, 40), None, level, steps)
    again = sampler.sample(a, "sde", _gens(2, 30), None, level, steps)
    assert torch.equal(again.chain, chain_a)


def test_policy_uses_eager_path_off_cuda(policy):
    assert policy.config.fast_sampler is True
    assert policy.fast_sampler() is None  # CPU: eager loop (graphs need CUDA)


def test_batch_buckets_pad_and_slice(policy):
    """A batch of 3 runs in the bucket of 4 (pad rows copy row 0) and gives
    the eager loop's chunks; a later batch of 4 reuses that signature."""
    sampler = FastSampler(policy, use_graphs=False, bucket_batches=True)
    batch = policy.preprocess(make_inputs(3, seed=5))
    level, steps = policy.config.noise_level, policy.num_steps
    fast = sampler.sample(batch, "sde", _gens(3, 50), None, level, steps)
    eager = policy.sample(batch, "sde", generator=_gens(3, 50))
    assert fast.chain.shape[0] == 3 and fast.log_prob.shape == (3,)
    assert (fast.chain - eager.chain).abs().max().item() <= 1e-5
    assert (fast.log_prob - eager.log_prob).abs().max().item() <= 1e-3
    four = policy.preprocess(make_inputs(4, seed=6))
    sampler.sample(four, "sde", _gens(4, 60), None, level, steps)
    assert len(sampler._graphs) == 1


def test_compiled_layers_serve_the_sampler_only(monkeypatch):
    """``policy.compile``: the layers' compiled calls are installed for the
    sampler's chunks and removed after; log_prob and its backward (the
    update, BC) run the eager layers. torch.compile is replaced by a
    counting identity here (the mechanism, not inductor, is under test)."""
    calls = [0]

    def counting_compile(fn, **_kwargs):
        def compiled(*args, **kwargs):
            calls[0] += 1
            return fn(*args, **kwargs)

        return compiled

    monkeypatch.setattr(torch, "compile", counting_compile)
    policy = tiny_policy(num_steps=3)
    m = policy.model.model
    layers = [*m.vlm.vision_tower.encoder.layers, *m.vlm.language_model.layers, *m.dit.layers]
    batch = policy.preprocess(make_inputs(2, seed=5))
    compiled = FastSampler(policy, use_graphs=False, compile_layers=True)
    out = compiled.sample(batch, "sde", _gens(2, 3), None, policy.config.noise_level, 3)
    per_chunk = (
        len(m.vlm.vision_tower.encoder.layers) + len(m.vlm.language_model.layers)
        + 3 * len(m.dit.layers)
    )  # fmt: skip
    assert calls[0] == per_chunk
    assert all(layer._compiled_call_impl is None for layer in layers)
    plain = _fast(policy, batch, "sde", _gens(2, 3))
    torch.testing.assert_close(out.chain, plain.chain, atol=0, rtol=0)
    assert calls[0] == per_chunk  # the plain sampler did not use them
    policy.log_prob(batch, out.chain).sum().backward()
    assert calls[0] == per_chunk  # nor did re-scoring and its backward
