"""The cost model: bytes each part of a run holds, FLOPs and seconds of a policy call.

Plain arithmetic on a :class:`~ript_core.plan.footprint.PolicyFootprint`;
the formulas, and the measurements their constants were fitted on, are in
``docs/planner.md``.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Sequence

import attrs

from ript_core.plan.footprint import PolicyFootprint, TransformerDims
from ript_core.plan.machine import MachineSpec
from ript_core.policy.buckets import batch_bucket

# --- optimizer / precision assumptions ------------------------------------------
#: AdamW keeps two fp32 moments per trainable parameter.
ADAM_BYTES_PER_TRAINABLE = 8
#: ``optim.moments: 8bit`` (bitsandbytes' AdamW8bit): two uint8 moments plus a
#: float32 scale per 256-value block of each (tensors under 4096 values keep
#: fp32 moments: a few thousand parameters of pi0, not counted).
ADAM_8BIT_BYTES_PER_TRAINABLE = 2 + 2 * 4 / 256
#: Gradients are accumulated in fp32 across micro-batches (bf16 accumulation
#: loses small updates).
GRAD_BYTES_PER_TRAINABLE = 4
#: With bf16 weights the optimizer keeps an fp32 master copy of trainable ones.
MASTER_BYTES_PER_TRAINABLE = 4

#: Under activation checkpointing, the one layer being recomputed and
#: back-propagated holds about this many times its saved activations (the
#: activations, their gradients, the kernels' temporaries); fitted on GPU
#: peaks of full pi0 (docs/planner.md).
CHECKPOINT_BACKWARD_LAYERS = 2.25


# ============================================================================
# memory (all in bytes)
# ============================================================================


def model_bytes(policy: PolicyFootprint) -> int:
    """Weights resident on the device: one copy, in the model dtype."""
    return policy.n_params * policy.dtype_bytes


def optimizer_state_bytes(policy: PolicyFootprint) -> int:
    """Training state that stays allocated between updates (through rollouts too).

    AdamW's two moments (fp32, or 8-bit with ``optimizer_moments="8bit"``),
    plus an fp32 master copy of the trainable weights when the model runs in
    bf16. (Assumes ``AdamW(fused=True)``: the foreach implementation allocates
    one more fp32 copy of the trainable params per step.)
    """
    return int(policy.n_trainable * optimizer_state_bytes_per_trainable(policy))


def optimizer_state_bytes_per_trainable(policy: PolicyFootprint) -> float:
    """AdamW's moments (+ the fp32 master under bf16) per trainable parameter."""
    per = (
        ADAM_8BIT_BYTES_PER_TRAINABLE
        if policy.optimizer_moments == "8bit"
        else ADAM_BYTES_PER_TRAINABLE
    )
    return per + (MASTER_BYTES_PER_TRAINABLE if policy.dtype_bytes < 4 else 0)


def grad_bytes(policy: PolicyFootprint) -> int:
    """fp32 gradient buffers, alive from the first backward to the optimizer step."""
    return policy.n_trainable * GRAD_BYTES_PER_TRAINABLE


def kv_cache_bytes(policy: PolicyFootprint, batch: int = 1) -> int:
    """Prefix KV cache: K and V of every Gemma layer for every prefix token."""
    t = policy.text
    return (
        2 * t.layers * t.kv_heads * t.head_dim * policy.prefix_tokens * policy.dtype_bytes * batch
    )


def fused_projection_bytes(policy: PolicyFootprint) -> int:
    """The CUDA fast sampler's fused copies of the expert's q/k/v and gate/up
    weights (ript_core/policy/fast/fused_projections.py). Counted whole even when
    adapters leave some layers unfused."""
    e = policy.expert
    rows = e.heads * e.head_dim + 2 * e.kv_heads * e.head_dim + 2 * e.mlp
    return e.layers * e.width * rows * policy.dtype_bytes


def _working_elems(d: TransformerDims, tokens: int, kv_len: int) -> int:
    """Elements alive inside one layer during a forward without grad."""
    mlp_live = 3 if d.gated_mlp else 2
    return tokens * (2 * d.width + mlp_live * d.mlp) + d.heads * tokens * kv_len


def _saved_elems(d: TransformerDims, tokens: int, kv_len: int) -> int:
    """Elements one layer saves for backward: norms, q/k/v, attention output,
    residuals (≈ 8 × width), the MLP intermediates (4 × mlp gated, 2 plain) and
    the attention probabilities (heads × q × kv; counted even though fused SDPA
    kernels avoid them — a conservative bound)."""
    mlp_saved = 4 if d.gated_mlp else 2
    return tokens * (8 * d.width + mlp_saved * d.mlp) + d.heads * tokens * kv_len


def _kv_concat_elems(policy: PolicyFootprint) -> int:
    """Per expert layer and step: K and V of prefix + suffix concatenated."""
    t = policy.text
    return 2 * t.kv_heads * t.head_dim * (policy.prefix_tokens + policy.suffix_tokens)


def rollout_activation_bytes(policy: PolicyFootprint, batch: int) -> int:
    """Transient bytes of one batched ``sample`` call beyond weights and KV cache.

    Layers run one after another without grad, so the peak is the largest
    single layer's working set (SigLIP over all cameras, the Gemma prefix, or
    one expert denoising step attending to the cache), plus the sampled chain.
    """
    p, s = policy.prefix_tokens, policy.suffix_tokens
    vision = policy.n_cameras * _working_elems(
        policy.vision, policy.tokens_per_image, policy.tokens_per_image
    )
    prefix = _working_elems(policy.text, p, p) + 2 * p * policy.text.width
    expert = _working_elems(policy.expert, s, p + s) + _kv_concat_elems(policy)
    per_sample = max(vision, prefix, expert) * policy.dtype_bytes
    chain = (policy.num_steps + 1) * policy.chunk_size * policy.action_dim * 4  # fp32 chain
    return batch * (per_sample + chain)


def update_activation_bytes(policy: PolicyFootprint, micro_batch: int, checkpointing: bool) -> int:
    """Activations of one micro-batch's forward+backward of the RIPT log-prob.

    The expert runs ``update_steps`` denoising steps with grad over the suffix,
    all in one pass (``update_steps`` x the suffix rows per layer);
    with ``grads_through_vlm`` the SigLIP + Gemma prefix is stored too,
    otherwise the prefix runs without grad and only its KV cache is kept.
    With activation checkpointing each layer keeps only its input and one
    layer at a time is recomputed and back-propagated: its activations plus
    their gradients and the backward's temporaries,
    :data:`CHECKPOINT_BACKWARD_LAYERS` x one layer's saved activations.
    """
    p, s, k = policy.prefix_tokens, policy.suffix_tokens, policy.update_steps
    img = policy.tokens_per_image
    parts: list[tuple[int, int, int]] = []  # (n_layers_stored, tokens×width, one layer saved)
    expert_layer = _saved_elems(policy.expert, s, p + s) + _kv_concat_elems(policy)
    # log_prob scores the k steps in one expert pass (k x the rows per layer)
    parts.append((policy.expert.layers, k * s * policy.expert.width, k * expert_layer))
    extra = 0
    if policy.grads_through_vlm:
        parts.append((policy.text.layers, p * policy.text.width, _saved_elems(policy.text, p, p)))
        if policy.grads_through_vision:
            vis_layer = policy.n_cameras * _saved_elems(policy.vision, img, img)
            parts.append(
                (policy.vision.layers, policy.n_cameras * img * policy.vision.width, vis_layer)
            )
    else:
        extra = kv_cache_bytes(policy) // policy.dtype_bytes  # no-grad prefix, cache kept
        extra += _working_elems(policy.text, p, p)  # its transient (one layer)
    if checkpointing:
        stored = sum(n * inp for n, inp, _ in parts)
        stored += CHECKPOINT_BACKWARD_LAYERS * max(one for _, _, one in parts)
    else:
        stored = sum(n * one for n, _, one in parts)
    return int(micro_batch * (stored + extra) * policy.dtype_bytes)


# ============================================================================
# compute and time of a policy call
# ============================================================================

#: Fixed time per transformer layer pass of one ``sample`` call -- the part
#: that does not grow with the batch (kernel launches and gaps, Python).
#: cuda: full pi0 in bf16 through the CUDA-graph fast sampler (the default
#: there); cpu: ``pi0-tiny`` on a 2-core CPU (docs/planner.md).
CALL_S_PER_LAYER_PASS = {"cuda": 1.16e-4, "cpu": 0.65e-3}
#: Sustained FLOP/s of the per-sample work by (device, dtype bytes),
#: calibrated on the same runs; the fp32 GPU figure assumes TF32 off (fp32
#: parity), about a twelfth of the bf16 rate.
SAMPLE_FLOPS_PER_S = {
    ("cuda", 2): 4.2e14,
    ("cuda", 4): 5.0e13,
    ("cpu", 2): 2.0e10,
    ("cpu", 4): 2.0e10,
}


def sample_flops(policy: PolicyFootprint) -> float:
    """FLOPs of one sample of one ``sample`` call: SigLIP over every camera, the
    Gemma prefix once, and ``num_steps`` expert passes attending to the cache
    (2 FLOPs per weight per token + the attention score and value products).
    The work the policy needs, not what transformers' forward does: of the
    prefix's last Gemma layer only the key/value projections count (the rest
    of it is dead, and skipped: ript_core/policy/fast/kv_only_layer.py)."""

    def stack(d: TransformerDims, tokens: int, kv: int, layers: int | None = None) -> float:
        return (d.layers if layers is None else layers) * (
            2.0 * tokens * d.layer_params() + 4.0 * tokens * kv * d.heads * d.head_dim
        )

    img, p, s = policy.tokens_per_image, policy.prefix_tokens, policy.suffix_tokens
    vision = policy.n_cameras * stack(policy.vision, img, img)
    text = policy.text
    last_kv = 2.0 * p * 2 * text.width * text.kv_heads * text.head_dim
    prefix = stack(text, p, p, layers=text.layers - 1) + last_kv
    expert = policy.num_steps * stack(policy.expert, s, p + s)
    return vision + prefix + expert


@attrs.frozen
class InferenceCost:
    """Seconds of one batched policy call: ``call_s + per_sample_s × batch``.

    Build it from the policy's architecture (:meth:`estimate`, what ``ript
    plan`` uses without a model), from measured calls (:meth:`fit` on
    ``RolloutStats.policy_call_times``), or from your own numbers.

    ``bucketed``: the policy pads every batch to the next power of two (the
    CUDA fast sampler, the default on a GPU), so a call of 43 costs what one
    of 64 does; without it the planner would split envs into groups whose
    calls it costs too low (docs/planner.md).
    """

    call_s: float
    per_sample_s: float
    source: str = "given"
    bucketed: bool = False

    def __attrs_post_init__(self) -> None:
        if self.call_s < 0 or self.per_sample_s < 0:
            raise ValueError(f"inference costs must be >= 0, got {self}")

    def seconds(self, batch: int, sizes: Collection[int] = ()) -> float:
        """One call of ``batch``; ``sizes``: the batch sizes announced to a
        bucketing policy (:func:`~ript_core.policy.buckets.batch_bucket`)."""
        run = batch_bucket(batch, sizes) if self.bucketed else batch
        return self.call_s + self.per_sample_s * run

    @classmethod
    def estimate(
        cls, policy: PolicyFootprint, machine: MachineSpec, bucketed: bool | None = None
    ) -> InferenceCost:
        """From the architecture and two calibration points (see the constants).
        ``bucketed`` defaults to what the policy does by default: buckets on
        CUDA (the fast sampler), exact batches on CPU."""
        passes = policy.vision.layers + policy.text.layers + policy.num_steps * policy.expert.layers
        call = passes * CALL_S_PER_LAYER_PASS[machine.device]
        rate = SAMPLE_FLOPS_PER_S[(machine.device, policy.dtype_bytes)]
        bucketed = machine.device == "cuda" if bucketed is None else bucketed
        return cls(
            call,
            sample_flops(policy) / rate,
            source=f"estimated for {machine.device}"
            + (", power-of-two batches" if bucketed else ""),
            bucketed=bucketed,
        )

    @classmethod
    def fit(
        cls,
        calls: Sequence[tuple[int, float]],
        bucketed: bool = False,
        sizes: Collection[int] = (),
    ) -> InferenceCost:
        """Least squares of ``seconds = call_s + per_sample_s × batch`` on measured
        ``(batch, seconds)`` calls, on the median per batch size (one slow call —
        a warm-up, a busy core — should not move the line). With a single batch
        size the two terms cannot be told apart: it is all ``call_s``.
        ``bucketed``: the calls ran padded to their bucket (``batch_bucket``
        with the announced ``sizes``), so the line is fitted against those."""
        by_batch: dict[int, list[float]] = {}
        for b, t in calls:
            run = batch_bucket(int(b), sizes) if bucketed else int(b)
            by_batch.setdefault(run, []).append(float(t))
        if not by_batch:
            raise ValueError("no policy calls to fit")
        xs = sorted(by_batch)
        ys = [statistics.median(by_batch[b]) for b in xs]
        tag = ", power-of-two batches" if bucketed else ""
        if len(xs) == 1:
            return cls(ys[0], 0.0, source=f"measured (one batch size){tag}", bucketed=bucketed)
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = max(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx, 0.0)
        return cls(max(my - slope * mx, 0.0), slope, source=f"measured{tag}", bucketed=bucketed)
