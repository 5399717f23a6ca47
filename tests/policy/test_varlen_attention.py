"""Key-limited attention (varlen_attention.py): the limits' bookkeeping and
the attention function, on CPU against masked SDPA computed here. The flash
kernel itself runs only on CUDA: bench/gpu_policy.py checks it there against
:func:`reference_varlen_attention`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ript_core.policy.fast import varlen_attention
from ript_core.policy.fast.varlen_attention import (
    KWARG,
    flash_applies,
    key_limited_attention,
    limit_mask,
    prefix_limits,
    reference_varlen_attention,
    suffix_key_limits,
    suffix_limits,
    varlen_attention_forward,
)


@contextlib.contextmanager
def patch_attention(fn) -> Iterator[None]:  # noqa: ANN001
    """Register ``fn`` as the key-limited implementation for the duration."""
    mapping = AttentionInterface._global_mapping
    before = mapping[varlen_attention.IMPLEMENTATION]
    mapping[varlen_attention.IMPLEMENTATION] = fn
    try:
        yield
    finally:
        mapping[varlen_attention.IMPLEMENTATION] = before


VALID = torch.tensor([7, 3, 10])  # valid prefix tokens per sample
P, S = 10, 4
T = P + S


def _masked_sdpa(query, key, value, mask, scale):
    """Per sample: SDPA over ``[H, Q, D]`` with the KV heads repeated and a
    boolean ``[Q, T]`` mask -- the definition, sample by sample."""
    groups = query.shape[1] // key.shape[1]
    out = []
    for b in range(query.shape[0]):
        k = key[b].repeat_interleave(groups, dim=0)
        v = value[b].repeat_interleave(groups, dim=0)
        out.append(F.scaled_dot_product_attention(query[b], k, v, attn_mask=mask[b], scale=scale))
    return torch.stack(out)  # [B, H, Q, D]


def test_limits_mean_the_leading_keys_of_the_own_sample():
    bsz = VALID.shape[0]
    pre = prefix_limits(VALID, P, T).dense_mask(bsz * T).view(bsz, P, bsz, T)
    suf = suffix_limits(VALID, S, T).dense_mask(bsz * T).view(bsz, S, bsz, T)
    rows = suffix_key_limits(VALID, S)
    for b in range(bsz):
        for other in range(bsz):
            if other != b:
                assert not bool(pre[b, :, other].any()) and not bool(suf[b, :, other].any())
        assert torch.equal(pre[b, :, b], torch.arange(T)[None, :].expand(P, T) < VALID[b])
        assert torch.equal(suf[b, :, b], torch.arange(T)[None, :] < rows[b][:, None])
        assert torch.equal(suf[b, :, b], limit_mask(rows, T)[b, 0])
    lim = suffix_limits(VALID, S, T)
    assert lim.max_q == S - 1 and lim.max_k == T
    assert lim.cu_q.dtype == lim.cu_k.dtype == lim.seqused_k.dtype == torch.int32
    assert lim.seqused_k.tolist() == [8, 11, 4, 7, 11, 14]


@pytest.mark.parametrize("site", ["prefix", "suffix"])
def test_attention_function_with_limits_equals_masked_sdpa(site):
    """GQA (4 query heads on 2 KV heads), the keys the whole buffer."""
    torch.manual_seed(0)
    bsz, heads, kv_heads, dim = VALID.shape[0], 4, 2, 8
    q_len = P if site == "prefix" else S
    query = torch.randn(bsz, heads, q_len, dim)
    key, value = torch.randn(bsz, kv_heads, T, dim), torch.randn(bsz, kv_heads, T, dim)
    if site == "prefix":
        limits, rows = prefix_limits(VALID, P, T), VALID[:, None].expand(-1, P)
    else:
        limits, rows = suffix_limits(VALID, S, T), suffix_key_limits(VALID, S)
    mask = limit_mask(rows, T)[:, 0]
    module = nn.Module()
    out, weights = varlen_attention_forward(
        module, query, key, value, None, scaling=0.3, **{KWARG: limits}
    )
    expected = _masked_sdpa(query, key, value, mask, 0.3).transpose(1, 2)
    assert weights is None and out.shape == (bsz, q_len, heads, dim)
    assert (out - expected).abs().max().item() <= 1e-6


def test_reference_is_one_dense_masked_call():
    """The flattened reference against the per-sample definition."""
    torch.manual_seed(1)
    bsz, heads, dim = VALID.shape[0], 2, 4
    q = torch.randn(bsz * S, heads, dim)
    k, v = torch.randn(bsz * T, 1, dim), torch.randn(bsz * T, 1, dim)
    out = reference_varlen_attention(q, k, v, suffix_limits(VALID, S, T), 0.5)
    mask = limit_mask(suffix_key_limits(VALID, S), T)[:, 0]
    per_sample = _masked_sdpa(
        q.view(bsz, S, heads, dim).transpose(1, 2),
        k.view(bsz, T, 1, dim).transpose(1, 2),
        v.view(bsz, T, 1, dim).transpose(1, 2),
        mask,
        0.5,
    )
    assert (out.view(bsz, S, heads, dim) - per_sample.transpose(1, 2)).abs().max() <= 1e-6


def test_without_limits_it_is_transformers_sdpa():
    torch.manual_seed(2)
    module = nn.Module()
    module.is_causal = False
    query, key = torch.randn(2, 2, 5, 8), torch.randn(2, 2, 7, 8)
    value = torch.randn(2, 2, 7, 8)
    mask = torch.rand(2, 1, 5, 7) > 0.3
    mask[..., 0] = True
    ours, _ = varlen_attention_forward(module, query, key, value, mask, scaling=0.2)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.2)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    "q_len,kv_heads,keys,limits,match",
    [
        (P, 1, P, lambda: prefix_limits(VALID, P, T), "whole KV buffer"),
        (S, 2, T, lambda: suffix_limits(VALID, S, T, rows_per_token=4), "one KV head"),
    ],
)
def test_bad_keys_are_refused(q_len, kv_heads, keys, limits, match):
    """Keys shorter than the buffer the limits index; folded heads over two KV heads."""
    with pytest.raises(ValueError, match=match):
        varlen_attention_forward(
            nn.Module(),
            torch.randn(3, 4, q_len, 8),
            torch.randn(3, kv_heads, keys, 8),
            torch.randn(3, kv_heads, keys, 8),
            None,
            **{KWARG: limits()},
        )


def test_flash_applies_only_to_half_precision_on_ampere_or_newer(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not flash_applies(torch.bfloat16, cpu, 256)
    # as on a CUDA build: the kernels exist; the GPU decides
    monkeypatch.setattr(torch.backends.cuda, "is_flash_attention_available", lambda: True)
    capability = [(9, 0)]
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability[0])
    assert flash_applies(torch.bfloat16, cuda, 256)
    assert flash_applies(torch.float16, cuda, 64)
    assert not flash_applies(torch.float32, cuda, 256)
    assert not flash_applies(torch.bfloat16, cuda, 512)
    capability[0] = (7, 5)  # a T4: torch ships flash kernels it cannot run
    assert not flash_applies(torch.bfloat16, cuda, 256)


def test_switch_restores_the_implementation_after_an_error():
    from tests.policy.conftest import tiny_policy

    policy = tiny_policy()
    inner = policy.model.model
    cfg = inner.dit.layers[0].self_attn.config
    before = cfg._attn_implementation
    with pytest.raises(RuntimeError), key_limited_attention(inner.vlm.language_model, inner.dit):
        assert cfg._attn_implementation == varlen_attention.IMPLEMENTATION
        assert inner.vlm.language_model.layers[0].self_attn.config._attn_implementation == (
            varlen_attention.IMPLEMENTATION
        )
        raise RuntimeError("boom")
    assert cfg._attn_implementation == before
    # SigLIP keeps its own attention
    vision = inner.vlm.vision_tower.config
    assert vision._attn_implementation != varlen_attention.IMPLEMENTATION


def test_folded_heads_equal_masked_sdpa():
    """One KV head: the suffix's query heads folded into the rows (each
    token's heads one after another) give the per-head attention."""
    torch.manual_seed(3)
    bsz, heads, dim = VALID.shape[0], 4, 8
    query = torch.randn(bsz, heads, S, dim)
    key, value = torch.randn(bsz, 1, T, dim), torch.randn(bsz, 1, T, dim)
    limits = suffix_limits(VALID, S, T, rows_per_token=heads)
    assert limits.max_q == (S - 1) * heads and int(limits.cu_q[-1]) == bsz * S * heads
    out, _ = varlen_attention_forward(
        nn.Module(), query, key, value, None, scaling=0.3, **{KWARG: limits}
    )
    mask = limit_mask(suffix_key_limits(VALID, S), T)[:, 0]
    expected = _masked_sdpa(query, key, value, mask, 0.3).transpose(1, 2)
    assert (out - expected).abs().max().item() <= 1e-6
    # the same as unfolded
    plain, _ = varlen_attention_forward(
        nn.Module(), query, key, value, None, scaling=0.3, **{KWARG: suffix_limits(VALID, S, T)}
    )
    assert (out - plain).abs().max().item() <= 1e-6


# ---- key chunks (split_keys): flash-decoding for small calls ----------------------------


@pytest.mark.parametrize("splits", [2, 3, 5])
def test_split_keys_then_combine_equals_the_unsplit_call(splits):
    """The folded suffix's attention cut into key chunks (some chunks hold no
    key of a sequence: the state rows see few) and merged by log-sum-exp
    equals the one call, and the function runs it from the limits alone."""
    from ript_core.policy.fast.varlen_attention import (
        combine_key_splits,
        reference_with_lse,
        split_keys,
    )

    torch.manual_seed(4)
    bsz, heads, dim = VALID.shape[0], 4, 8
    query = torch.randn(bsz, heads, S, dim)
    key, value = torch.randn(bsz, 1, T, dim), torch.randn(bsz, 1, T, dim)
    limits = suffix_limits(VALID, S, T, rows_per_token=heads)
    total_q = bsz * S * heads
    split = split_keys(limits, splits, total_q)
    chunk = -(-T // splits)
    assert split.key_splits == splits and split.max_k == chunk
    assert int(split.cu_q[-1]) == splits * total_q and split.cu_q.dtype == torch.int32
    # every chunk's keys lie inside the sample's buffer and inside its limit
    used = split.seqused_k.view(splits, -1)
    assert torch.equal(used.sum(0), limits.seqused_k)
    assert bool((used == 0).any())  # a state row's late chunks are empty
    whole, _ = varlen_attention_forward(
        nn.Module(), query, key, value, None, scaling=0.3, **{KWARG: limits}
    )
    parts, _ = varlen_attention_forward(
        nn.Module(), query, key, value, None, scaling=0.3, **{KWARG: split}
    )
    assert (parts - whole).abs().max().item() <= 1e-6
    # the pieces by hand: repeated queries, chunk outputs, log-sum-exps
    q = query.transpose(1, 2).reshape(total_q, 1, dim)
    k, v = key.transpose(1, 2).reshape(-1, 1, dim), value.transpose(1, 2).reshape(-1, 1, dim)
    out, lse = reference_with_lse(q.repeat(splits, 1, 1), k, v, split, 0.3)
    assert lse.shape == (1, splits * total_q) and bool(torch.isinf(lse).any())
    merged = combine_key_splits(out, lse, splits)
    assert (merged.view(bsz, S, heads, dim) - whole).abs().max().item() <= 1e-6


def test_combining_ignores_the_output_of_an_empty_chunk():
    from ript_core.policy.fast.varlen_attention import combine_key_splits

    out = torch.tensor([[[1.0, 2.0]], [[float("nan"), 5.0]], [[3.0, 4.0]]])  # 3 chunks x 1 row
    lse = torch.tensor([[0.0, float("inf"), 0.0]])  # chunk 1: no keys (flash writes +inf)
    merged = combine_key_splits(out, lse, 3)
    assert torch.equal(merged, torch.tensor([[[2.0, 3.0]]]))


def test_key_splits_fill_about_half_the_gpu_with_chunks_of_128_keys_or_more():
    from ript_core.policy.fast.varlen_attention import key_splits_for

    # pi0's expert step, folded: 7 query blocks x 2 sequences per sample, 611 keys
    assert key_splits_for(14, 611, 132) == 4  # batch 1: 611 // 128 keys caps it
    assert key_splits_for(28, 611, 132) == 2  # batch 2
    assert key_splits_for(56, 611, 132) == 1  # batch 4: 56 blocks ~ 0.42 x 132, round(1.18)
    assert key_splits_for(224, 611, 132) == 1  # batch 16: the blocks fill the GPU
    assert key_splits_for(2, 5000, 132) == 8  # capped at MAX_KEY_SPLITS
    assert key_splits_for(2, 100, 132) == 1  # too few keys to cut
