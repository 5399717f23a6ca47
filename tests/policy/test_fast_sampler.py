"""The static-cache sampler (ript_core.policy.fast.sampler) against the eager loop, on CPU.

On CPU the chunk function runs without CUDA graphs; what a graph adds is
replay of the same kernels, so these tests pin the maths: masks, positions,
the static KV cache, the precomputed time embeddings, the RNG order.
"""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicCache
from transformers.masking_utils import create_causal_mask

from ript_core.policy.fast import varlen_attention
from ript_core.policy.fast.prefix_cache import PrefixKVCache, valid_first_order
from ript_core.policy.fast.sampler import FastSampler
from ript_core.policy.fast.varlen_attention import limit_mask, suffix_key_limits
from tests.policy.conftest import make_inputs, tiny_policy
from tests.policy.test_sampling import reference_actions
from tests.policy.test_varlen_attention import patch_attention


def _fast(policy, batch, mode, generator=None, noise=None, level=None):
    level = policy.config.noise_level if level is None else level
    return FastSampler(policy, use_graphs=False).sample(
        batch, mode, generator, noise, level, policy.num_steps
    )


def _gens(n: int, seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def _mixed_camera_inputs(n: int = 3, seed: int = 0):
    """Prompts of different lengths and, in sample 1, a missing wrist camera:
    masked prefix tokens both at the end and in the middle."""
    inputs = make_inputs(n, seed=seed)
    inputs[1] = make_inputs(2, seed=seed + 7, wrist=False)[1]
    return inputs


def test_valid_first_order_is_stable_and_puts_valid_tokens_first():
    valid = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    order = valid_first_order(valid)
    assert order.tolist() == [[0, 2, 3, 1, 4], [2, 4, 0, 1, 3], [0, 1, 2, 3, 4]]


def test_masks_equal_transformers_in_the_cache_layout(policy):
    """The sampler's masks are transformers' (prefix: PaliGemma with
    token_type_ids 0; suffix: PI0Model.forward's block mask), moved into the
    cache's layout: valid prefix tokens first, the suffix right after them,
    nothing visible beyond. Checked for every valid query, with padded
    prompts and a camera missing in the middle of the prefix."""
    batch = policy.preprocess(_mixed_camera_inputs())
    am = policy.model_inputs(batch)["attention_mask"]
    bsz, p, s = am.shape[0], am.shape[1], policy.chunk_size + 1
    t = p + s
    valid = am.bool()
    assert not bool(valid[1, : p // 2].all()), "the test needs a masked camera"
    cfg = policy.model.config
    ref_prefix = create_causal_mask(
        config=cfg.vlm_config.text_config,
        inputs_embeds=torch.zeros(bsz, p, 4),
        attention_mask=am,
        cache=None,
        position_ids=am.cumsum(-1) - 1,
        block_sequence_ids=torch.zeros_like(am),
    ).expand(bsz, 1, p, p)
    cache = DynamicCache(config=cfg.dit_config)
    kv = torch.zeros(bsz, cfg.dit_config.num_key_value_heads, p, cfg.dit_config.head_dim)
    for i in range(cfg.dit_config.num_hidden_layers):
        cache.update(kv, kv, i)
    blocks = torch.cat([torch.zeros(p + 1, dtype=torch.long), torch.ones(s - 1, dtype=torch.long)])
    ref_suffix = create_causal_mask(
        config=cfg.dit_config,
        inputs_embeds=torch.zeros(bsz, s, 4),
        attention_mask=torch.cat([am, torch.ones(bsz, s, dtype=am.dtype)], dim=1),
        cache=cache,
        block_sequence_ids=blocks[None].repeat(bsz, 1),
    ).expand(bsz, 1, s, p + s)

    order = valid_first_order(valid)
    length = valid.sum(1)
    ours_prefix = limit_mask(length[:, None], t).expand(-1, -1, p, -1)
    ours_suffix = limit_mask(suffix_key_limits(length, s), t)
    for b in range(bsz):
        n = int(length[b])
        # cache slot -> the key it holds in transformers' layout
        slot_key = torch.cat([order[b, :n], p + torch.arange(s)])
        for row in range(n):  # a valid prefix query, in cache order
            query = int(order[b, row])
            assert torch.equal(ours_prefix[b, 0, row, :n], ref_prefix[b, 0, query, order[b, :n]])
            assert not bool(ours_prefix[b, 0, row, n:].any())
        assert torch.equal(ours_suffix[b, 0, :, : n + s], ref_suffix[b, 0][:, slot_key])
        assert not bool(ours_suffix[b, 0, :, n + s :].any())
        # and transformers hides nothing of what the layout drops
        assert not bool(ref_prefix[b, 0][valid[b]][:, ~valid[b]].any())


def test_prefix_cache_writes_in_place():
    """Prefix phase: slots [0, P); suffix phase: each sample's S slots right
    after its valid prefix; the same storage throughout."""
    cache = PrefixKVCache(2, 2, 1, 4, 2, 3, torch.float32, torch.device("cpu"))
    addr = cache.keys[1].data_ptr()
    cache.begin_prefix()
    k, v = cache.update(torch.ones(2, 1, 4, 3), torch.full((2, 1, 4, 3), 2.0), 1)
    assert k.shape == (2, 1, 6, 3) and bool((v[:, :, :4] == 2).all())
    assert cache.get_seq_length() == 0
    cache.begin_suffix(torch.tensor([4, 1]))
    suffix = torch.arange(2 * 2 * 3, dtype=torch.float32).view(2, 1, 2, 3) + 10
    k, _ = cache.update(suffix, suffix, 1)
    assert torch.equal(k[0, :, 4:6], suffix[0]) and bool((k[0, :, :4] == 1).all())
    assert torch.equal(k[1, :, 1:3], suffix[1])
    assert bool((k[1, :, :1] == 1).all()) and bool((k[1, :, 3:4] == 1).all())
    assert cache.keys[1].data_ptr() == addr and cache.get_seq_length() == 4


@pytest.mark.parametrize("varlen,fold", [(False, False), (True, False), (True, True)])
def test_mixed_padding_equals_eager(policy, varlen, fold, monkeypatch):
    """Padded prompts and a missing camera: the reordered prefix and the
    moved suffix give the eager loop's chunk, through SDPA masks and through
    the key-limited route (its dense reference on CPU), with the expert's
    heads folded into the rows or not."""
    monkeypatch.setattr(varlen_attention, "FOLD_HEADS", fold)
    batch = policy.preprocess(_mixed_camera_inputs(seed=3))
    noise = torch.randn(
        3, policy.chunk_size, policy.max_action_dim, generator=torch.Generator().manual_seed(8)
    )
    sampler = FastSampler(policy, use_graphs=False, varlen=varlen)
    fast = sampler.sample(batch, "ode", None, noise, 0.0, policy.num_steps)
    eager = policy.sample(batch, "ode", noise=noise)
    assert (fast.chain - eager.chain).abs().max().item() <= 1e-5
    sde = sampler.sample(batch, "sde", _gens(3, 70), None, 0.5, policy.num_steps)
    ref = policy.sample(batch, "sde", generator=_gens(3, 70))
    assert (sde.chain - ref.chain).abs().max().item() <= 1e-5
    assert (sde.log_prob - ref.log_prob).abs().max().item() <= 1e-3


def test_varlen_is_off_on_cpu_and_restores_the_attention_implementation(policy):
    """On CPU the sampler defaults to SDPA masks; forced on, it switches the
    Gemma and expert layers to the key-limited function per chunk only."""
    assert FastSampler(policy, use_graphs=False).varlen is False
    with pytest.MonkeyPatch.context() as mp:  # where flash runs: on for SDPA policies only
        mp.setattr(varlen_attention, "flash_applies", lambda *_: True)
        assert FastSampler(policy, use_graphs=False).varlen is True
        mp.setattr(policy.config, "attn_implementation", "eager")
        assert FastSampler(policy, use_graphs=False).varlen is False
    inner = policy.model.model
    configs = [
        inner.vlm.language_model.layers[0].self_attn.config,
        inner.dit.layers[0].self_attn.config,
    ]
    before = [c._attn_implementation for c in configs]
    seen = []
    original = varlen_attention.varlen_attention_forward

    def spy(module, query, *args, **kwargs):
        seen.append(kwargs.get(varlen_attention.KWARG) is not None)
        return original(module, query, *args, **kwargs)

    with patch_attention(spy):
        FastSampler(policy, use_graphs=False, varlen=True).sample(
            policy.preprocess(make_inputs(2)), "ode", None, None, 0.0, policy.num_steps
        )
    layers = policy.model.config.dit_config.num_hidden_layers
    # the prefix's last layer runs no attention (kv_only_layer.py)
    assert len(seen) == layers - 1 + layers * policy.num_steps and all(seen)
    assert [c._attn_implementation for c in configs] == before


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


def test_sharded_weights_are_not_supported():
    """FSDP-sharded weights gather through hooks a graph cannot capture; the
    check reads the cached parameter dicts (param_watch.py), and sees the
    DTensors fully_shard puts there without a registration."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    policy = tiny_policy()
    assert FastSampler.supported(policy)
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        fully_shard(policy.model.model.dit.layers[0])
        assert not FastSampler.supported(policy)
    finally:
        dist.destroy_process_group()


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
    # the last Gemma layer only fills the prefix cache (kv_only_layer.py), uncompiled
    per_chunk = (
        len(m.vlm.vision_tower.encoder.layers) + len(m.vlm.language_model.layers) - 1
        + 3 * len(m.dit.layers)
    )  # fmt: skip
    assert calls[0] == per_chunk
    assert all(layer._compiled_call_impl is None for layer in layers)
    plain = _fast(policy, batch, "sde", _gens(2, 3))
    torch.testing.assert_close(out.chain, plain.chain, atol=0, rtol=0)
    assert calls[0] == per_chunk  # the plain sampler did not use them
    policy.log_prob(batch, out.chain).sum().backward()
    assert calls[0] == per_chunk  # nor did re-scoring and its backward


def test_policy_and_actor_pass_announced_sizes_to_the_fast_sampler(policy, monkeypatch):
    from ript_core.rl.actor import PI0Actor

    policy.expect_batch_sizes([3, 5])  # CPU: no fast sampler, nothing to do
    sampler = FastSampler(policy, use_graphs=False, bucket_batches=True)
    monkeypatch.setattr(policy, "fast_sampler", lambda: sampler)
    PI0Actor(policy).expect_batch_sizes((21, 22, 0))
    assert sampler.batch_sizes == {21, 22}


def test_key_chunks_in_the_sampler_equal_the_eager_loop(policy):
    """The expert's key-limited attention cut into key chunks (what the CUDA
    sampler does at small batches, here through the dense reference)."""
    batch = policy.preprocess(_mixed_camera_inputs(seed=5))
    level, steps = policy.config.noise_level, policy.num_steps
    sampler = FastSampler(policy, use_graphs=False, varlen=True, key_splits=3)
    fast = sampler.sample(batch, "sde", _gens(3, 90), None, level, steps)
    eager = policy.sample(batch, "sde", generator=_gens(3, 90))
    assert (fast.chain - eager.chain).abs().max().item() <= 1e-5
    assert (fast.log_prob - eager.log_prob).abs().max().item() <= 1e-3
    # on CPU nothing splits unless asked; without the key-limited route never
    assert (
        FastSampler(policy, use_graphs=False, varlen=True)._key_splits(1, policy.device, 611) == 1
    )
    assert (
        FastSampler(policy, use_graphs=False, key_splits=4)._key_splits(1, policy.device, 611) == 1
    )
