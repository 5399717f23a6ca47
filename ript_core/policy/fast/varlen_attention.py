"""PI0's sampling attention as "each query sees the first n keys": FlashAttention
without a mask.

The fast sampler (:mod:`.sampler`) lays a sample's KV buffer out as ``[valid
prefix tokens | state | actions | unused]`` (the prefix tokens are reordered so
that the valid ones come first; the suffix is written right after them). Then
every attention call of a chunk has one of three shapes, with ``L`` the
sample's number of valid prefix tokens and ``S`` the suffix length:

- a prefix query sees keys ``[0, L)``;
- the state query sees keys ``[0, L + 1)``;
- an action query sees keys ``[0, L + S)``.

"Query group ``i`` sees the first ``n_i`` keys of its sample" is what
FlashAttention's variable-length kernel expresses without any mask
(``seqused_k``): :class:`KeyLimits` holds those tensors. Against the boolean
masks that SDPA takes otherwise, this avoids the memory-efficient kernel a
mask forces, and
transformers' ``repeat_kv``, which copies the one KV head eight times for
every masked GQA call. With one KV head the expert's query heads are also
folded into the rows (:data:`FOLD_HEADS`).

The same limits are also a plain boolean mask (:func:`KeyLimits.dense_mask`,
:func:`limit_mask`): where FlashAttention does not apply (:func:`flash_applies`:
CPU, float32, GPUs before Ampere, no flash kernel in the torch build) the
sampler passes that mask to the configured attention, and the CPU tests check
the flash route's bookkeeping against it (:func:`reference_varlen_attention`).

The attention function is registered with transformers as
``"ript_varlen"`` and switched on per use (:func:`key_limited_attention`);
without limits in its keyword arguments it is transformers' SDPA path.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any, NamedTuple

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

#: transformers' attention implementation name for :func:`varlen_attention_forward`.
IMPLEMENTATION = "ript_varlen"

#: The keyword argument that carries :class:`KeyLimits` through transformers'
#: model and layer ``**kwargs`` down to the attention function.
KWARG = "ript_key_limits"


class KeyLimits(NamedTuple):
    """FlashAttention's variable-length arguments for one attention site.

    Queries are flattened to ``[sum of query lengths, heads, head_dim]`` and
    keys to ``[batch * buffer_len, kv_heads, head_dim]``; query sequence ``i``
    is rows ``cu_q[i]:cu_q[i+1]`` and sees ``seqused_k[i]`` keys from row
    ``cu_k[i]`` of the keys. All int32 (the kernel's type)."""

    cu_q: torch.Tensor
    cu_k: torch.Tensor
    seqused_k: torch.Tensor
    max_q: int
    max_k: int
    #: query rows per token: 1, or the number of query heads when they are
    #: folded into the rows (one KV head: every head of a token reads the
    #: same keys, so ``[B, Q, H, D]`` becomes ``B*Q*H`` single-head rows)
    rows_per_token: int = 1
    #: > 1: the limits of :func:`split_keys` -- every query sequence once per
    #: chunk of its keys; the call repeats the queries and combines the chunks
    key_splits: int = 1

    def dense_mask(self, total_k: int) -> torch.Tensor:
        """``[total_q, total_k]`` bool: which flattened key each flattened
        query sees -- the limits' meaning, written out (tests, reference)."""
        total_q = int(self.cu_q[-1])
        q_seq = (
            torch.searchsorted(
                self.cu_q.long(), torch.arange(total_q, device=self.cu_q.device), right=True
            )
            - 1
        )
        start = self.cu_k.long()[q_seq][:, None]
        stop = start + self.seqused_k.long()[q_seq][:, None]
        k = torch.arange(total_k, device=self.cu_q.device)[None, :]
        return (k >= start) & (k < stop)


def prefix_limits(valid_len: torch.Tensor, prefix_len: int, buffer_len: int) -> KeyLimits:
    """Every prefix query of sample ``b`` sees its ``valid_len[b]`` first keys."""
    bsz = valid_len.shape[0]
    idx = torch.arange(bsz + 1, device=valid_len.device, dtype=torch.int32)
    return KeyLimits(
        cu_q=idx * prefix_len,
        cu_k=idx * buffer_len,
        seqused_k=valid_len.to(torch.int32),
        max_q=prefix_len,
        max_k=buffer_len,
    )


def suffix_key_limits(valid_len: torch.Tensor, suffix_len: int) -> torch.Tensor:
    """``[B, S]``: how many leading keys each suffix query sees -- the state
    token (row 0) the valid prefix and itself, the action tokens the valid
    prefix, the state and all actions: transformers' ``PI0Model.forward``
    block mask (prefix + state one block, the actions a second) in the
    fast sampler's KV layout (module docstring)."""
    # tensor ops only (no host scalar written into a device tensor): this
    # runs inside CUDA graph capture
    row = torch.arange(suffix_len, device=valid_len.device)
    return valid_len[:, None] + torch.where(row == 0, 1, suffix_len)[None, :]


def suffix_limits(
    valid_len: torch.Tensor, suffix_len: int, buffer_len: int, rows_per_token: int = 1
) -> KeyLimits:
    """Two query sequences per sample: the state token (row 0) and the action
    tokens (rows ``1..S-1``), each seeing its :func:`suffix_key_limits` from
    the start of the sample's buffer. With ``rows_per_token`` (the heads
    folded into the rows) each token is that many rows."""
    bsz = valid_len.shape[0]
    dev = valid_len.device
    rows = suffix_len * rows_per_token  # query rows per sample
    starts = torch.arange(bsz, device=dev, dtype=torch.int32)
    cu_q = torch.stack([starts * rows, starts * rows + rows_per_token], dim=1).flatten()
    cu_k = (starts * buffer_len).repeat_interleave(2)
    end = torch.full((1,), bsz, device=dev, dtype=torch.int32)
    used = suffix_key_limits(valid_len, suffix_len)[:, :2].flatten()  # state, actions
    return KeyLimits(
        cu_q=torch.cat([cu_q, end * rows]),
        cu_k=torch.cat([cu_k, end * buffer_len]),
        seqused_k=used.to(torch.int32),
        max_q=(suffix_len - 1) * rows_per_token,
        max_k=buffer_len,
        rows_per_token=rows_per_token,
    )


def split_keys(limits: KeyLimits, splits: int, total_q: int) -> KeyLimits:
    """The same attention as ``splits`` chunks of keys per query sequence
    (flash-decoding): sequence ``i`` once per chunk ``c`` of ``C =
    ceil(max_k / splits)`` keys, its queries repeated (rows ``c * total_q +
    ...``), seeing keys ``[cu_k[i] + c*C, ...)`` up to its own limit. A small
    call -- the expert's step at batch 1 is 14 FlashAttention blocks of
    queries (7 x 2 sequences) on 132 SMs, each reading 611 keys one block
    after another --
    then runs ``splits`` times as many blocks, each over ``C`` keys;
    :func:`combine_key_splits` merges their outputs by their log-sum-exps.
    ``total_q``: the flattened query rows (``cu_q[-1]``, known on the host)."""
    if splits <= 1:
        return limits
    chunk = -(-limits.max_k // splits)
    dev = limits.cu_q.device
    c = torch.arange(splits, device=dev, dtype=torch.int32)[:, None]
    cu_q = (limits.cu_q[None, :-1] + c * total_q).flatten()
    cu_k = (limits.cu_k[None, :-1] + c * chunk).flatten()
    used = (limits.seqused_k[None, :] - c * chunk).clamp(0, chunk).flatten()
    end_q = torch.full((1,), splits * total_q, device=dev, dtype=torch.int32)
    return KeyLimits(
        cu_q=torch.cat([cu_q, end_q]),
        cu_k=torch.cat([cu_k, limits.cu_k[-1:]]),
        seqused_k=used.to(torch.int32),
        max_q=limits.max_q,
        max_k=chunk,
        rows_per_token=limits.rows_per_token,
        key_splits=splits,
    )


def combine_key_splits(out: torch.Tensor, lse: torch.Tensor, splits: int) -> torch.Tensor:
    """``out`` ``[splits * T, H, D]`` and ``lse`` ``[H, splits * T]`` of the
    chunks of :func:`split_keys` -> ``[T, H, D]``: each chunk's output weighted
    by ``exp(lse_c - max_c lse_c)`` (float32). A chunk with no keys for a row
    (an infinite or NaN log-sum-exp) has weight 0 and its output is not read."""
    rows, heads, dim = out.shape
    t = rows // splits
    lse = lse.view(heads, splits, t).permute(1, 2, 0)  # [splits, T, H]
    lse = torch.where(torch.isfinite(lse), lse, float("-inf"))
    weights = torch.exp(lse - lse.amax(0))  # every row sees >= 1 key in some chunk
    parts = torch.where(weights[..., None] > 0, out.view(splits, t, heads, dim).float(), 0.0)
    merged = (weights[..., None] * parts).sum(0) / weights.sum(0)[..., None]
    return merged.to(out.dtype)


#: The expert's step is split over key chunks when FlashAttention would run
#: fewer than this fraction of the GPU's SMs in blocks of queries
#: (:func:`key_splits_for`), into chunks of at least :data:`MIN_SPLIT_KEYS`.
SPLIT_BELOW_SM_FRACTION = 0.5
MIN_SPLIT_KEYS = 128
MAX_KEY_SPLITS = 8
#: FlashAttention 2's query block at head dim 256 (its forward kernel traits)
FLASH_BLOCK_M = 64


def key_splits_for(query_blocks: int, keys: int, sm_count: int) -> int:
    """How many key chunks :func:`split_keys` should cut a call into: enough
    that ``query_blocks x splits`` fills about :data:`SPLIT_BELOW_SM_FRACTION`
    of the SMs again, with at least :data:`MIN_SPLIT_KEYS` keys per chunk;
    1 (no split) when the query blocks alone fill that much."""
    if query_blocks >= SPLIT_BELOW_SM_FRACTION * sm_count:
        return 1
    by_sms = max(1, round(SPLIT_BELOW_SM_FRACTION * sm_count / max(query_blocks, 1)))
    return max(1, min(MAX_KEY_SPLITS, by_sms, keys // MIN_SPLIT_KEYS))


def limit_mask(key_limit: torch.Tensor, buffer_len: int) -> torch.Tensor:
    """``[B, 1, Q, buffer_len]`` bool from ``key_limit[b, q]`` (how many
    leading keys query ``q`` of sample ``b`` sees): the SDPA form of the limits."""
    keys = torch.arange(buffer_len, device=key_limit.device)
    return (keys[None, None, :] < key_limit[:, :, None])[:, None]


def _flash_kernel() -> Any:
    """torch's public variable-length FlashAttention if it takes ``seqused_k``
    and GQA (torch >= 2.13), else the aten op it wraps (older torch: the
    same kernel, the same arguments)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        varlen_attn = None
    if varlen_attn is not None:
        params = inspect.signature(varlen_attn).parameters
        if "seqused_k" in params and "enable_gqa" in params:

            def public(q, k, v, lim, scale):  # noqa: ANN001, ANN202
                return varlen_attn(
                    q,
                    k,
                    v,
                    lim.cu_q,
                    lim.cu_k,
                    lim.max_q,
                    lim.max_k,
                    scale=scale,
                    enable_gqa=True,
                    seqused_k=lim.seqused_k,
                )

            return public

    def aten(q, k, v, lim, scale):  # noqa: ANN001, ANN202
        return _flash_with_lse(q, k, v, lim, scale)[0]

    return aten


def _flash_with_lse(q, k, v, lim, scale):  # noqa: ANN001, ANN202
    """The aten FlashAttention op, returning ``(out, lse)`` (``lse``
    ``[H, total_q]`` where :func:`flash_lse_is_per_row`)."""
    out = torch.ops.aten._flash_attention_forward(
        q,
        k,
        v,
        lim.cu_q,
        lim.cu_k,
        lim.max_q,
        lim.max_k,
        0.0,
        False,
        False,
        scale=scale,
        seqused_k=lim.seqused_k,
    )
    return out[0], out[1]


_FLASH = _flash_kernel()


_FLASH_LSE_OUTSIDE_GRAPHS = torch.compiler.disable(_flash_with_lse)


def flash_lse_is_per_row(device: torch.device) -> bool:
    """Whether this torch build's variable-length FlashAttention returns its
    log-sum-exp as ``[heads, total_q]`` (one per flattened query row, what
    :func:`combine_key_splits` reads; older FlashAttention builds padded it
    per sequence). Probed once per device with a tiny call."""
    key = str(device)
    if key not in _LSE_PER_ROW:
        try:
            q = torch.zeros(3, 1, 64, dtype=torch.bfloat16, device=device)
            kv = torch.zeros(4, 1, 64, dtype=torch.bfloat16, device=device)
            lim = KeyLimits(
                cu_q=torch.tensor([0, 1, 3], dtype=torch.int32, device=device),
                cu_k=torch.tensor([0, 2, 4], dtype=torch.int32, device=device),
                seqused_k=torch.tensor([2, 2], dtype=torch.int32, device=device),
                max_q=2,
                max_k=2,
            )
            _, lse = _flash_with_lse(q, kv, kv, lim, 1.0)
            _LSE_PER_ROW[key] = tuple(lse.shape) == (1, 3)
        except RuntimeError:
            _LSE_PER_ROW[key] = False
    return _LSE_PER_ROW[key]


_LSE_PER_ROW: dict[str, bool] = {}

#: Launch the flash kernel outside torch.compile's graphs (a graph break
#: around it; the sampler's CUDA graph captures it either way): an extern
#: kernel gives inductor nothing to fuse, and under the CUDA graph the break
#: costs nothing.
EAGER_FLASH = True
_FLASH_OUTSIDE_GRAPHS = torch.compiler.disable(_FLASH)

#: Fold the query heads into the rows of the expert's suffix when there is
#: one KV head (PI0): FlashAttention runs one block of rows per (sequence,
#: head), so the state token's one-row sequences cost a whole block per
#: head; folded, its eight heads share one block and the action tokens fill
#: theirs (docs/benchmarks.md).
FOLD_HEADS = True


def flash_applies(dtype: torch.dtype, device: torch.device, head_dim: int) -> bool:
    """Whether the FlashAttention route can run: CUDA, half precision, head
    dim <= 256, a torch built with flash kernels and a GPU they run on
    (compute capability 8.0 or newer: Ampere, Hopper, ...)."""
    return (
        device.type == "cuda"
        and dtype in (torch.float16, torch.bfloat16)
        and head_dim <= 256
        and torch.backends.cuda.is_flash_attention_available()
        and torch.cuda.get_device_capability(device) >= (8, 0)
    )


def reference_varlen_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, limits: KeyLimits, scale: float
) -> torch.Tensor:
    """The flattened call written as one dense masked attention (any device):
    what the flash kernel computes, for tests and CPU runs of the route."""
    return reference_with_lse(q, k, v, limits, scale)[0]


def reference_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, limits: KeyLimits, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense float32 attention of the flattened call with its log-sum-exp
    ``[H, total_q]``, also for rows that see no key (output 0, log-sum-exp
    -inf): what the flash route of a :func:`split_keys` call computes."""
    groups = q.shape[1] // k.shape[1]
    # [H, Tq, D] x [H, Tk, D], the KV heads repeated for the query heads
    mask = limits.dense_mask(k.shape[0])
    qh = q.transpose(0, 1).float()
    kh = k.transpose(0, 1).repeat_interleave(groups, dim=0).float()
    vh = v.transpose(0, 1).repeat_interleave(groups, dim=0).float()
    scores = (qh @ kh.transpose(1, 2) * scale).masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # [H, Tq]
    probs = torch.where(mask, torch.exp(scores - lse[..., None]), 0.0)
    return (probs @ vh).transpose(0, 1).to(q.dtype), lse


def varlen_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract (``query`` ``[B, H, Q, D]``,
    ``key``/``value`` ``[B, KVH, T, D]``, returns ``[B, Q, H, D]``).

    With :class:`KeyLimits` under :data:`KWARG` the keys must be the whole
    static buffer (``T`` = the limits' ``max_k``); FlashAttention runs on CUDA
    where :func:`flash_applies`, the dense reference elsewhere. Without limits
    this is transformers' SDPA attention with ``attention_mask``."""
    limits: KeyLimits | None = kwargs.pop(KWARG, None)
    if limits is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    bsz, heads, q_len, head_dim = query.shape
    kv_heads, buffer_len = key.shape[1], key.shape[2]
    chunk = -(-buffer_len // limits.key_splits)  # split_keys' chunk of this buffer
    if chunk != limits.max_k:
        raise ValueError(
            f"key-limited attention needs the whole KV buffer ({limits.max_k} slots), "
            f"got {buffer_len} keys"
        )
    scale = head_dim**-0.5 if scaling is None else scaling
    # [B, H, Q, D] -> [B*Q, H, D]; free when the projection's layout is kept
    q = query.transpose(1, 2).reshape(bsz * q_len, heads, head_dim)
    k = key.transpose(1, 2).reshape(bsz * buffer_len, kv_heads, head_dim)
    v = value.transpose(1, 2).reshape(bsz * buffer_len, kv_heads, head_dim)
    if limits.rows_per_token > 1:
        if kv_heads != 1 or limits.rows_per_token != heads:
            raise ValueError(
                f"folded heads need one KV head and {heads} rows per token, got "
                f"{kv_heads} KV heads and {limits.rows_per_token} rows per token"
            )
        q = q.view(bsz * q_len * heads, 1, head_dim)  # rows (b, token, head)
    flash = flash_applies(q.dtype, q.device, head_dim)
    if limits.key_splits > 1:
        # the queries once per key chunk, the chunks merged (split_keys)
        q_rep = q.repeat(limits.key_splits, 1, 1)
        chunks = _FLASH_LSE_OUTSIDE_GRAPHS if flash else reference_with_lse
        out = combine_key_splits(*chunks(q_rep, k, v, limits, scale), limits.key_splits)
    elif flash:
        out = (_FLASH_OUTSIDE_GRAPHS if EAGER_FLASH else _FLASH)(q, k, v, limits, scale)
    else:
        out = reference_varlen_attention(q, k, v, limits, scale)
    return out.view(bsz, q_len, heads, head_dim), None


AttentionInterface.register(IMPLEMENTATION, varlen_attention_forward)


def _attention_configs(models: list[nn.Module]) -> list[Any]:
    found: dict[int, Any] = {}
    for model in models:
        for module in model.modules():
            cfg = getattr(module, "config", None)
            if hasattr(module, "layer_idx") and hasattr(module, "q_proj") and cfg is not None:
                found[id(cfg)] = cfg
    return list(found.values())


@contextlib.contextmanager
def key_limited_attention(*models: nn.Module) -> Iterator[None]:
    """Route the attention layers of ``models`` (PI0's Gemma and expert)
    through :func:`varlen_attention_forward` for the duration; restore their
    implementation afterwards. The configs are the modules' own (transformers
    copies a sub-model's config when it builds it)."""
    configs = _attention_configs(list(models))
    before = [cfg._attn_implementation for cfg in configs]
    try:
        for cfg in configs:
            cfg._attn_implementation = IMPLEMENTATION
        yield
    finally:
        for cfg, impl in zip(configs, before, strict=True):
            cfg._attn_implementation = impl
