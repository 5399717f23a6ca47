"""Memory-aware parallel strategy: how many env workers, which batch sizes.

RL post-training of a 3.5B-parameter PI0 runs out of memory on 24–48 GB GPUs
in the public alternatives (DESIGN §4), mostly because they hold one model
copy per env or size their batches by hand. ``plan()`` turns a few plain
numbers — the policy's parameter counts and architecture, the machine's
memory and cores, the simulator's per-env RAM — into a :class:`ParallelPlan`
with a predicted peak memory per phase and the reasoning in plain English, so
that a plan that does not fit is refused *before* a run, with what would fit.

Architecture it plans for (DESIGN §1): env worker processes each hold ONE
simulator env in CPU RAM and never a model; the main process holds the single
policy on the device and runs one batched inference over all live envs
(rollout phase), then the RIPT update (update phase): log-probs of the
sampled denoising chains are recomputed with gradients, micro-batched with
gradient accumulation, followed by an AdamW step. The model's bytes are
counted once, whatever the number of env workers.

Everything here is plain arithmetic on attrs classes: it is testable for any
machine without building a model (:meth:`PolicyFootprint.from_hf_config`
counts parameters on the ``meta`` device, which allocates nothing). The
formulas are written out in ``docs/planner.md``.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from ript_core.policy.buckets import batch_bucket

GB = 1_000_000_000  # decimal, like GPU spec sheets ("80 GB") and the CLI flags

# --- safety margin ------------------------------------------------------------
#: Fraction of device memory never planned for (fragmentation, estimate error).
MARGIN_FRACTION = 0.10
#: Fixed allowance on a GPU, outside the fraction: CUDA context (~0.5 GB on an
#: H100, not seen by ``torch.cuda.max_memory_allocated``), cuBLAS/cuDNN
#: workspaces and allocator slack.
CUDA_FIXED_ALLOWANCE = int(1.5 * GB)
#: Fixed allowance of CPU RAM for the OS and the main process's own interpreter,
#: torch and libraries (the model and its batches are counted separately).
HOST_FIXED_ALLOWANCE = 2 * GB

# --- optimizer / precision assumptions (see docs/planner.md) ------------------
#: AdamW keeps two fp32 moments per trainable parameter.
ADAM_BYTES_PER_TRAINABLE = 8
#: ``optim.moments: 8bit`` (bitsandbytes' AdamW8bit): two uint8 moments plus a
#: float32 scale per 256-value block of each (tensors under 4096 values keep
#: fp32 moments: a few thousand parameters of pi0, not counted).
ADAM_8BIT_BYTES_PER_TRAINABLE = 2 + 2 * 4 / 256
#: ``optim.moments``: how AdamW stores its two moments (ript_core.rl.optimizer).
OPTIMIZER_MOMENTS = ("fp32", "8bit")
#: Gradients are accumulated in fp32 across micro-batches (bf16 accumulation
#: loses small updates).
GRAD_BYTES_PER_TRAINABLE = 4
#: With bf16 weights the optimizer keeps an fp32 master copy of trainable ones.
MASTER_BYTES_PER_TRAINABLE = 4

#: Below this micro-batch the update is launch-bound on a GPU: prefer turning
#: activation checkpointing on (≈ +33 % compute) to reach it.
MIN_EFFICIENT_MICRO_BATCH = 8

#: Whether the planner turns activation checkpointing on by itself when the
#: update does not fit a useful micro-batch without it
#: (ript_core.policy.activation_checkpointing; identical gradients). Its memory model
#: (``update_activation_bytes(..., checkpointing=True)``) is measured on the
#: H100 (bench/gpu_policy.py, docs/benchmarks.md): within 4 % at micro-batch
#: 16, 64 and 128 of full-size pi0.
ACTIVATION_CHECKPOINTING_AVAILABLE = True

#: Under checkpointing, the one layer being recomputed and back-propagated
#: holds about this many times its saved activations (the activations, their
#: gradients, the kernels' temporaries). Fitted on the H100, full pi0 bf16,
#: all of it training, ``log_prob`` scoring the 10 steps in one expert pass:
#: measured peaks 18.5 / 33.0 / 52.2 GB at micro-batch 16 / 64 / 128, 0.30 GB
#: per sample = 0.09 GB of stored layer inputs + 2.25 x 0.097 GB (one Gemma
#: layer). (With one expert pass per step it was 3: 0.39 GB per sample.)
CHECKPOINT_BACKWARD_LAYERS = 2.25

Strategy = str  # "full" | "expert" | "lora" | any name a plug-in strategy gives
PLAN_FIELDS = (
    "n_env_workers",
    "inference_batch",
    "train_micro_batch",
    "grad_accum",
    "activation_checkpointing",
    "pipeline_groups",
)


def fmt_gb(n_bytes: float) -> str:
    """Bytes as decimal GB with enough digits for both 7 GB and 2 MB numbers."""
    gb = n_bytes / GB
    if gb >= 10:
        return f"{gb:.1f} GB"
    if gb >= 0.1:
        return f"{gb:.2f} GB"
    return f"{n_bytes / 1e6:.1f} MB"


# ============================================================================
# inputs
# ============================================================================


@attrs.frozen
class MachineSpec:
    """The machine the run will use. ``device="cpu"``: the model lives in CPU RAM.

    ``device_total_bytes``/``device_free_bytes`` describe the accelerator (for
    ``cpu`` they equal the CPU RAM numbers: model and env workers then share
    one pool, and the planner charges both to it). ``cpu_ram_free_bytes``
    defaults to the total when unknown.
    """

    device: Literal["cpu", "cuda"]
    device_total_bytes: int
    device_free_bytes: int
    cpu_ram_bytes: int
    cpu_cores: int
    cpu_ram_free_bytes: int | None = None
    name: str = ""

    @classmethod
    def cpu_only(cls, ram_bytes: int, cores: int, *, free_bytes: int | None = None) -> MachineSpec:
        """A machine without GPU: the policy, its batches and the envs share the RAM."""
        free = ram_bytes if free_bytes is None else free_bytes
        return cls("cpu", ram_bytes, free, ram_bytes, cores, free, name="cpu")

    @classmethod
    def gpu(
        cls,
        device_bytes: int,
        cores: int,
        cpu_ram_bytes: int,
        *,
        device_free_bytes: int | None = None,
    ) -> MachineSpec:
        """A machine with one CUDA device (the main process uses one device)."""
        free = device_bytes if device_free_bytes is None else device_free_bytes
        return cls("cuda", device_bytes, free, cpu_ram_bytes, cores, name="cuda")

    @property
    def host_free_bytes(self) -> int:
        return self.cpu_ram_bytes if self.cpu_ram_free_bytes is None else self.cpu_ram_free_bytes


@attrs.frozen
class TransformerDims:
    """The numbers of one transformer stack that decide its activation memory."""

    layers: int
    width: int
    mlp: int
    heads: int
    kv_heads: int
    head_dim: int
    gated_mlp: bool = True  # Gemma: gate/up/down; SigLIP: fc1/fc2

    def layer_params(self) -> int:
        """Parameters of one layer (Gemma: no biases, RMSNorm; SigLIP: biases, LayerNorm)."""
        w = self.width
        q_out = self.heads * self.head_dim
        kv_out = self.kv_heads * self.head_dim
        if self.gated_mlp:
            attn = w * q_out + 2 * w * kv_out + q_out * w
            return attn + 3 * w * self.mlp + 2 * w
        attn = w * q_out + q_out + 2 * (w * kv_out + kv_out) + q_out * w + w
        return attn + w * self.mlp + self.mlp + self.mlp * w + w + 4 * w

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of the linear layers LoRA adapts in one layer."""
        return list(self.named_linear_shapes().values())

    def named_linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear of one layer, by its module name (Gemma's
        names for a gated stack, SigLIP's for a plain one)."""
        w, q, kv = self.width, self.heads * self.head_dim, self.kv_heads * self.head_dim
        attn = {"q_proj": (w, q), "k_proj": (w, kv), "v_proj": (w, kv)}
        if self.gated_mlp:
            return {
                **attn,
                "o_proj": (q, w),
                "gate_proj": (w, self.mlp),
                "up_proj": (w, self.mlp),
                "down_proj": (self.mlp, w),
            }
        return {**attn, "out_proj": (q, w), "fc1": (w, self.mlp), "fc2": (self.mlp, w)}


@attrs.frozen
class PolicyFootprint:
    """What the planner needs to know about a PI0 policy: counts, dtype, shapes.

    ``n_params`` are the parameters resident on the device (after dropping
    transformers' unused 263M expert embedding table, DESIGN §5, unless
    ``drop_unused_expert_embedding=False``). ``n_trainable`` and
    ``grads_through_vlm`` describe the training strategy; they are inputs so
    that strategies plug in: ``attrs.evolve(fp, strategy="mine", n_trainable=N,
    grads_through_vlm=...)``. ``logp_steps`` is the number of denoising steps
    recomputed with gradients at update time (``sde_scheme="all"``: every
    step of the RL sampler; ``"one"``: 1).
    """

    name: str
    n_params: int
    n_trainable: int
    dtype_bytes: int
    text: TransformerDims
    vision: TransformerDims
    expert: TransformerDims
    tokens_per_image: int
    n_cameras: int
    text_tokens: int
    chunk_size: int
    action_dim: int
    num_steps: int
    n_vlm_params: int
    n_expert_params: int
    strategy: Strategy = "full"
    grads_through_vlm: bool = True
    logp_steps: int | None = None
    n_adapter_params: int = 0  # LoRA adapters included in n_params
    # False when no SigLIP/projector tensor trains (expert, lora): autograd
    # records nothing there, so the vision tower stores no activations
    grads_through_vision: bool = True
    # how AdamW stores its moments (``optim.moments``): "fp32" or "8bit"
    optimizer_moments: str = "fp32"

    def __attrs_post_init__(self) -> None:
        if self.dtype_bytes not in (2, 4):
            raise ValueError(f"dtype_bytes must be 2 (bf16) or 4 (fp32), got {self.dtype_bytes}")
        if not 0 <= self.n_trainable <= self.n_params:
            raise ValueError(
                f"n_trainable ({self.n_trainable}) must be within 0..n_params ({self.n_params})"
            )
        if self.optimizer_moments not in OPTIMIZER_MOMENTS:
            raise ValueError(
                f"optimizer_moments must be 'fp32' or '8bit', got {self.optimizer_moments!r}"
            )

    # --- derived shapes ------------------------------------------------------
    @property
    def prefix_tokens(self) -> int:
        """PaliGemma prefix: image tokens of every camera + the padded prompt."""
        return self.n_cameras * self.tokens_per_image + self.text_tokens

    @property
    def suffix_tokens(self) -> int:
        """Action expert tokens: one state token + the action chunk (pi0)."""
        return self.chunk_size + 1

    @property
    def update_steps(self) -> int:
        return self.num_steps if self.logp_steps is None else self.logp_steps

    @property
    def dtype_name(self) -> str:
        return "bf16" if self.dtype_bytes == 2 else "fp32"

    # --- constructors --------------------------------------------------------
    @classmethod
    def pi0(
        cls,
        *,
        dtype_bytes: int = 2,
        n_cameras: int = 3,
        text_tokens: int = 48,
        num_steps: int = 10,
        drop_unused_expert_embedding: bool = True,
    ) -> PolicyFootprint:
        """Full-size openpi pi0: PaliGemma-3B + Gemma-300M action expert (~3.5B as shipped)."""
        text = TransformerDims(18, 2048, 16384, 8, 1, 256)
        vision = TransformerDims(27, 1152, 4304, 16, 16, 72, gated_mlp=False)
        expert = TransformerDims(18, 1024, 4096, 8, 1, 256)
        return cls._from_dims(
            "pi0",
            text=text,
            vision=vision,
            expert=expert,
            vocab=257152,
            patch=14,
            image_size=224,
            projection_in=1152,
            action_dim=32,
            state_dim=32,
            chunk_size=50,
            n_cameras=n_cameras,
            text_tokens=text_tokens,
            num_steps=num_steps,
            dtype_bytes=dtype_bytes,
            drop_unused_expert_embedding=drop_unused_expert_embedding,
        )

    @classmethod
    def pi0_tiny(cls, *, dtype_bytes: int = 4, num_steps: int = 5) -> PolicyFootprint:
        """The ``pi0-tiny`` test preset: 64/32 wide, 2 layers each, 2 × 56 px cameras."""
        text = TransformerDims(2, 64, 256, 4, 1, 16)
        vision = TransformerDims(2, 64, 128, 4, 4, 16, gated_mlp=False)
        expert = TransformerDims(2, 32, 128, 4, 1, 16)
        return cls._from_dims(
            "pi0-tiny",
            text=text,
            vision=vision,
            expert=expert,
            vocab=256,
            patch=14,
            image_size=56,
            projection_in=64,
            action_dim=8,
            state_dim=8,
            chunk_size=10,
            n_cameras=2,
            text_tokens=16,
            num_steps=num_steps,
            dtype_bytes=dtype_bytes,
            drop_unused_expert_embedding=True,
        )

    @classmethod
    def _from_dims(
        cls,
        name: str,
        *,
        text: TransformerDims,
        vision: TransformerDims,
        expert: TransformerDims,
        vocab: int,
        patch: int,
        image_size: int,
        projection_in: int,
        action_dim: int,
        state_dim: int,
        chunk_size: int,
        n_cameras: int,
        text_tokens: int,
        num_steps: int,
        dtype_bytes: int,
        drop_unused_expert_embedding: bool,
    ) -> PolicyFootprint:
        counts = count_pi0_params(
            text=text,
            vision=vision,
            expert=expert,
            vocab=vocab,
            patch=patch,
            image_size=image_size,
            projection_in=projection_in,
            action_dim=action_dim,
            state_dim=state_dim,
        )
        n_params = counts["vlm"] + counts["expert"]
        if not drop_unused_expert_embedding:
            n_params += counts["unused"]
        return cls(
            name=name,
            n_params=n_params,
            n_trainable=counts["vlm"] + counts["expert"],
            dtype_bytes=dtype_bytes,
            text=text,
            vision=vision,
            expert=expert,
            tokens_per_image=(image_size // patch) ** 2,
            n_cameras=n_cameras,
            text_tokens=text_tokens,
            chunk_size=chunk_size,
            action_dim=action_dim,
            num_steps=num_steps,
            n_vlm_params=counts["vlm"],
            n_expert_params=counts["expert"],
        )

    @classmethod
    def from_hf_config(
        cls,
        config: Any,
        *,
        dtype_bytes: int = 2,
        n_cameras: int = 3,
        text_tokens: int = 48,
        drop_unused_expert_embedding: bool = True,
    ) -> PolicyFootprint:
        """Footprint of a ``transformers.PI0Config`` (or its dict) with exact counts.

        Parameters are counted by instantiating ``PI0ForConditionalGeneration``
        on the ``meta`` device: shapes only, no memory, so a 3.5B config is
        counted in well under a second. Architecture numbers come from the
        config's sub-configs.
        """
        import torch
        from transformers import PI0Config, PI0ForConditionalGeneration

        if isinstance(config, Mapping):
            config = PI0Config(**config)
        with torch.device("meta"):
            model = PI0ForConditionalGeneration(config)
        vlm = expert = unused = 0
        for pname, p in model.named_parameters():
            n = p.numel()
            if pname.startswith("model.vlm."):
                vlm += n
            elif pname.startswith("model.dit.embed_tokens."):
                unused += n  # transformers allocates it; the expert never reads it
            else:
                expert += n  # expert layers/norm + action/state/time projections
        del model
        tc, vc, dc = (
            config.vlm_config.text_config,
            config.vlm_config.vision_config,
            config.dit_config,
        )

        def dims(c: Any, gated: bool) -> TransformerDims:
            head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
            kv = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
            return TransformerDims(
                c.num_hidden_layers,
                c.hidden_size,
                c.intermediate_size,
                c.num_attention_heads,
                kv,
                head_dim,
                gated_mlp=gated,
            )

        n_params = vlm + expert + (0 if drop_unused_expert_embedding else unused)
        return cls(
            name=str(getattr(config, "name_or_path", "") or "pi0-config"),
            n_params=n_params,
            n_trainable=vlm + expert,
            dtype_bytes=dtype_bytes,
            text=dims(tc, True),
            vision=dims(vc, False),
            expert=dims(dc, True),
            tokens_per_image=(vc.image_size // vc.patch_size) ** 2,
            n_cameras=n_cameras,
            text_tokens=text_tokens,
            chunk_size=config.chunk_size,
            action_dim=config.max_action_dim,
            num_steps=config.num_inference_steps,
            n_vlm_params=vlm,
            n_expert_params=expert,
        )

    # --- strategies ----------------------------------------------------------
    def projection_params(self) -> int:
        """The action/state/time projections around the expert (trained by every strategy)."""
        stack = self.expert.layers * self.expert.layer_params() + self.expert.width
        return max(self.n_expert_params - stack, 0)

    def lora_params(
        self,
        rank: int = 32,
        *,
        targets: Sequence[str] = ("vlm", "expert"),
        modules: Sequence[str] | None = None,
        train_projections: bool = True,
    ) -> int:
        """Trainable parameters of the ``lora`` strategy: rank-``rank`` adapters
        (``rank × (in + out)`` each) on the ``modules`` linears (default all
        attention and MLP linears, openpi's pi0 LoRA targets) of every layer of
        the ``targets`` stacks (``vlm``: Gemma-2B, ``expert``: Gemma-300M), plus
        the projections, trained in full unless ``train_projections=False``."""
        stacks = {"vlm": self.text, "expert": self.expert}
        adapters = 0
        for target in targets:
            dims = stacks[target]
            shapes = dims.named_linear_shapes()
            names = list(shapes) if modules is None else list(modules)
            adapters += dims.layers * sum(rank * sum(shapes[n]) for n in names)
        return adapters + (self.projection_params() if train_projections else 0)

    def for_strategy(
        self, strategy: Strategy, *, lora_rank: int = 32, lora: Any | None = None
    ) -> PolicyFootprint:
        """The same policy trained with ``full`` / ``expert`` / ``lora``.

        ``expert``: the VLM is frozen, its prefix runs without gradients (only
        its KV cache is kept for the expert's backward). ``lora``: base weights
        frozen, small adapters; with adapters on the VLM gradients flow through
        its Gemma layers (their activations are stored, SigLIP's are not); the
        adapters are added to ``n_params``. ``lora`` is a
        :class:`~ript_core.policy.config.LoraSettings` (rank, targets, modules,
        train_projections); without it ``lora_rank`` on both stacks.
        Other strategies: build with ``attrs.evolve`` (see class docstring).
        """
        base = self.n_params - self.n_adapter_params
        vision = True
        if strategy == "full":
            trainable, adapters, through_vlm = self.n_vlm_params + self.n_expert_params, 0, True
        elif strategy == "expert":
            trainable, adapters, through_vlm, vision = self.n_expert_params, 0, False, False
        elif strategy == "lora":
            rank = lora.rank if lora is not None else lora_rank
            targets = tuple(lora.targets) if lora is not None else ("vlm", "expert")
            kw: dict[str, Any] = {"targets": targets}
            if lora is not None:
                kw.update(modules=lora.modules, train_projections=lora.train_projections)
            trainable = self.lora_params(rank, **kw)
            adapters = self.lora_params(rank, **{**kw, "train_projections": False})
            through_vlm, vision = "vlm" in targets, False
        else:
            raise ValueError(
                f"unknown strategy {strategy!r}: use full, expert or lora, or build a footprint "
                "with attrs.evolve(footprint, strategy=..., n_trainable=..., grads_through_vlm=...)"
            )
        return attrs.evolve(
            self,
            strategy=strategy,
            n_params=base + adapters,
            n_trainable=trainable,
            n_adapter_params=adapters,
            grads_through_vlm=through_vlm,
            grads_through_vision=vision,
        )


def count_pi0_params(
    *,
    text: TransformerDims,
    vision: TransformerDims,
    expert: TransformerDims,
    vocab: int,
    patch: int,
    image_size: int,
    projection_in: int,
    action_dim: int,
    state_dim: int,
) -> dict[str, int]:
    """Parameter counts of transformers' PI0 from its architecture numbers.

    Returns ``{"vlm", "expert", "unused"}``: the PaliGemma VLM (SigLIP +
    projector + Gemma incl. its embedding table), the action expert with the
    action/state/time projections, and the expert's embedding table that
    transformers allocates but never uses. ``from_hf_config`` cross-checks
    these against a ``meta``-device model in the tests.
    """
    n_patches = (image_size // patch) ** 2
    vw = vision.width
    siglip = 3 * patch * patch * vw + vw + n_patches * vw  # patch conv + positions
    siglip += vision.layers * vision.layer_params() + 2 * vw  # + post layernorm
    projector = projection_in * text.width + text.width
    gemma = vocab * text.width + text.layers * text.layer_params() + text.width
    e = expert.width
    heads = (action_dim * e + e) + (state_dim * e + e)  # action_in_proj, state_proj
    heads += (2 * e * e + e) + (e * e + e)  # action_time_mlp_in / _out
    heads += e * action_dim + action_dim  # action_out_proj
    expert_n = expert.layers * expert.layer_params() + e + heads
    return {"vlm": siglip + projector + gemma, "expert": expert_n, "unused": vocab * e}


@attrs.frozen
class BackendFootprint:
    """Per-env cost of a simulator backend, measured (DESIGN §5).

    ``env_ram_bytes`` is one env worker process's resident memory (interpreter,
    simulator, renderer, one env) — never a model. ``cores_per_env`` is how
    many cores one stepping env keeps busy.
    """

    name: str
    env_ram_bytes: int
    env_step_seconds: float
    cores_per_env: float = 1.0

    @classmethod
    def toy(cls) -> BackendFootprint:
        return cls("toy", 20_000_000, 0.0003)

    @classmethod
    def libero(cls) -> BackendFootprint:
        """LIBERO on CPU, two 128 px cameras rendered by Mesa EGL: ~190 ms/step."""
        return cls("libero", 1 * GB, 0.19)

    @classmethod
    def maniskill(cls) -> BackendFootprint:
        """ManiSkill3 CPU sim + CPU (lavapipe) rendering of one camera: ~35 ms/step."""
        return cls("maniskill", GB // 2, 0.035)

    @classmethod
    def named(cls, name: str) -> BackendFootprint:
        presets = {"toy": cls.toy, "libero": cls.libero, "maniskill": cls.maniskill}
        if name not in presets:
            raise ValueError(f"unknown backend footprint {name!r}: use one of {sorted(presets)}")
        return presets[name]()


# ============================================================================
# the memory model (all in bytes)
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
    weights (ript_core/policy/fast/fused_projections.py): 396 MB for PI0 in bf16.
    Counted whole even when adapters leave some layers unfused."""
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
# the rollout schedule: policy and env workers overlapped (issue 15)
# ============================================================================

#: Fixed time per transformer layer pass of one ``sample`` call -- the part
#: that does not grow with the batch (kernel launches and gaps, Python).
#: cuda: full pi0 in bf16 on an H100 through the CUDA-graph fast sampler (the
#: default there, with its key-limited FlashAttention and the prefix's last
#: layer cut to its keys/values): ≈ 26.2 ms per call for 27 + 18 + 10 × 18 =
#: 225 layer passes (the line through its SDE chunks at batch 1-64,
#: bench/results/gpu_policy.json, docs/benchmarks.md); the eager
#: path costs ~8× more (282 ms, DESIGN §5).
#: cpu: ``pi0-tiny`` on the 2-core CPU machine (9 ms for 2 + 2 + 5 × 2 = 14 passes).
CALL_S_PER_LAYER_PASS = {"cuda": 1.16e-4, "cpu": 0.65e-3}
#: Sustained FLOP/s of the per-sample work, calibrated on the same runs
#: (pi0 bf16 H100, fast sampler: ≈ 7.0 ms per extra sample for ≈ 2.94
#: TFLOP; pi0-tiny fp32 CPU: ≈ 0.8 ms per extra sample for 17 MFLOP -- both
#: FLOP counts without the prefix's dead last-layer work, see sample_flops).
#: The fp32 GPU figure assumes TF32 off (fp32 parity), about a twelfth of
#: the bf16 rate.
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


def round_batch_sizes(n_env: int, groups: int, max_batch: int | None = None) -> tuple[int, ...]:
    """The batch of every policy call in one full round of the runner: G
    groups (:func:`group_sizes`), each served in calls of at most
    ``max_batch``. The runner announces these to its policy
    (``expect_batch_sizes``) and the planner costs them unpadded."""
    out: set[int] = set()
    for n in group_sizes(n_env, min(groups, n_env)):
        cap = max_batch or n
        full, rest = divmod(n, cap)
        if full:
            out.add(cap)
        if rest:
            out.add(rest)
    return tuple(sorted(out))


@attrs.frozen
class InferenceCost:
    """Seconds of one batched policy call: ``call_s + per_sample_s × batch``.

    Build it from the policy's architecture (:meth:`estimate`, what ``ript
    plan`` uses without a model), from measured calls (:meth:`fit` on
    ``RolloutStats.policy_call_times``), or from your own numbers.

    ``bucketed``: the policy pads every batch to the next power of two (the
    CUDA fast sampler, the default on a GPU), so a call of 43 costs what one
    of 64 does. Without it the planner chose 3 groups of 43 envs for 128 on
    the H100 (predicted 1.48× lock-step); padded to 64, the same cost line
    gives G = 3 about 1.07×, while G = 4 (groups of 32) measured 1.49×.
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
        bucketing policy (:func:`batch_bucket`)."""
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
        ``bucketed``: the calls ran padded to their bucket (:func:`batch_bucket`
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


@attrs.frozen
class PipelineOption:
    """The predicted steady state of one group count G.

    ``period_s``: time between two decisions of the same env. ``policy_util``,
    ``env_util``: fraction of the period the policy, and each env worker, is
    busy. ``steps_per_s``: env steps per second over all workers.
    ``wave_s``: with D decisions per episode known, one wave of episodes
    including the ramp (the first round of inferences before every env
    steps, the last chunk after the last one); ``steps_per_s`` then counts it.
    """

    groups: int
    group_sizes: tuple[int, ...]
    calls_per_group: int
    policy_s: float  # policy time per period, all groups
    period_s: float
    policy_util: float
    env_util: float
    steps_per_s: float
    wave_s: float | None = None

    @property
    def cost_s(self) -> float:
        """What the planner minimises: the wave if known, else the period."""
        return self.period_s if self.wave_s is None else self.wave_s


def group_sizes(n_env: int, groups: int) -> tuple[int, ...]:
    """Workers per group as the runner deals them out (worker i -> group i % G)."""
    return tuple(len(range(g, n_env, groups)) for g in range(groups))


def pipeline_option(
    n_env: int,
    groups: int,
    env_chunk_s: float,
    cost: InferenceCost,
    *,
    inference_batch: int | None = None,
    replan_every: int = 5,
    decisions: int | None = None,
) -> PipelineOption:
    """Steady-state period of the round-robin schedule with G groups.

    Group g's policy time ``P_g`` is its calls (batches of at most
    ``inference_batch``); its envs step ``E`` = one chunk while the policy
    serves the other groups, so the period is
    ``T = max(Σ_g P_g, max_g (P_g + E))``: policy-bound when the other groups'
    inference covers a chunk, env-bound otherwise. G = 1 gives lock-step,
    ``T = P + E``. With ``decisions`` = D per episode, a wave of episodes
    costs ``Σ_g P_g + (D − 1)·T + E``: short episodes pay the ramp.
    """
    if n_env < 1 or groups < 1:
        raise ValueError(f"need n_env >= 1 and groups >= 1, got {n_env}, {groups}")
    groups = min(groups, n_env)
    sizes = group_sizes(n_env, groups)
    cap = inference_batch or max(sizes)
    # the runner announces its calls' sizes: a bucketing policy runs them unpadded
    announced = round_batch_sizes(n_env, groups, inference_batch)
    per_group = []
    for n in sizes:
        full, rest = divmod(n, cap)
        per_group.append(
            full * cost.seconds(cap, announced) + (cost.seconds(rest, announced) if rest else 0.0)
        )
    policy = sum(per_group)
    period = max(policy, max(pg + env_chunk_s for pg in per_group))
    wave = None if decisions is None else policy + (decisions - 1) * period + env_chunk_s
    steps = n_env * replan_every * (1 if wave is None else decisions)
    return PipelineOption(
        groups=groups,
        group_sizes=sizes,
        calls_per_group=math.ceil(max(sizes) / cap),
        policy_s=policy,
        period_s=period,
        policy_util=policy / period if period else 0.0,
        env_util=env_chunk_s / period if period else 0.0,
        steps_per_s=steps / (period if wave is None else wave) if period else 0.0,
        wave_s=wave,
    )


#: A larger G must beat the best smaller one by this much to be chosen: the
#: cost model is rough, and every extra group means smaller batches and more
#: policy calls for the same work.
PIPELINE_MIN_GAIN = 0.05


@attrs.frozen
class PipelinePlan:
    """The chosen G, the env and inference costs it rests on, every G considered."""

    groups: int
    env_chunk_s: float
    cost: InferenceCost
    options: tuple[PipelineOption, ...]
    overridden: bool = False

    @property
    def chosen(self) -> PipelineOption:
        return next(o for o in self.options if o.groups == self.groups)

    @property
    def lockstep(self) -> PipelineOption:
        return self.options[0]

    @property
    def policy_util(self) -> float:
        return self.chosen.policy_util

    @property
    def env_util(self) -> float:
        return self.chosen.env_util

    @property
    def speedup(self) -> float:
        return self.lockstep.cost_s / self.chosen.cost_s if self.chosen.cost_s else 1.0


def choose_pipeline(
    n_env: int,
    env_chunk_s: float,
    cost: InferenceCost,
    *,
    inference_batch: int | None = None,
    replan_every: int = 5,
    max_groups: int = 8,
    override: int | None = None,
    decisions: int | None = None,
) -> PipelinePlan:
    """The G (1..``max_groups``, at most one group per env) with the shortest
    predicted period — or wave of episodes, when ``decisions`` per episode
    are known; a larger G must win by :data:`PIPELINE_MIN_GAIN`."""
    top = max(1, min(n_env, max(max_groups, override or 1)))
    options = tuple(
        pipeline_option(
            n_env,
            g,
            env_chunk_s,
            cost,
            inference_batch=inference_batch,
            replan_every=replan_every,
            decisions=decisions,
        )
        for g in range(1, top + 1)
    )
    best = options[0]
    for o in options[1:]:
        if o.cost_s < best.cost_s * (1 - PIPELINE_MIN_GAIN):
            best = o
    if override is not None:
        return PipelinePlan(min(override, top), env_chunk_s, cost, options, overridden=True)
    return PipelinePlan(best.groups, env_chunk_s, cost, options)


# ============================================================================
# the plan
# ============================================================================


@attrs.define
class ParallelPlan:
    """The chosen parallel strategy, its predicted memory and why.

    ``peak_bytes`` holds the predicted device peak per phase (``rollout``,
    ``update``); on a CPU-only machine it includes the env workers' RAM,
    which shares the pool. ``breakdown`` itemises each phase (``weights`` is
    the single model copy, ``env_workers`` is ``n_env_workers × env RAM``).
    ``host_bytes`` is the CPU RAM of the env workers, ``host_usable_bytes``
    what the host offers them (after the margin and the main process).
    """

    n_env_workers: int
    inference_batch: int
    train_micro_batch: int
    grad_accum: int
    activation_checkpointing: bool
    train_batch: int
    peak_bytes: dict[str, int]
    breakdown: dict[str, dict[str, int]]
    usable_bytes: int
    host_bytes: int
    host_usable_bytes: int
    fits: bool
    reasons: list[str]
    strategy: Strategy
    overridden: tuple[str, ...] = ()
    pipeline: PipelinePlan | None = None
    #: when the plan does not fit: the strategy that would (see recommend_strategy)
    recommended_strategy: Strategy | None = None

    @property
    def pipeline_groups(self) -> int:
        """G for ``RolloutRunner(pipeline_groups=...)`` (1: lock-step)."""
        return self.pipeline.groups if self.pipeline is not None else 1

    def settings(self) -> dict[str, int | bool]:
        """The fields a trainer applies (user overrides already folded in)."""
        return {f: getattr(self, f) for f in PLAN_FIELDS}

    def summary(self) -> str:
        """Multi-line plain text for logs."""
        lines = [
            f"plan ({self.strategy}): {self.n_env_workers} env workers, inference batch "
            f"{self.inference_batch}, micro-batch {self.train_micro_batch} × {self.grad_accum} "
            f"accumulation, activation checkpointing "
            f"{'on' if self.activation_checkpointing else 'off'}",
            *(
                f"  {phase}: predicted peak {fmt_gb(b)} of {fmt_gb(self.usable_bytes)} usable"
                for phase, b in self.peak_bytes.items()
            ),
            f"  fits: {self.fits}",
            *(
                [
                    f"  rollout schedule: {self.pipeline.groups} group(s); predicted policy "
                    f"busy {self.pipeline.policy_util:.0%}, env workers busy "
                    f"{self.pipeline.env_util:.0%}"
                ]
                if self.pipeline is not None
                else []
            ),
            *(f"  - {r}" for r in self.reasons),
        ]
        return "\n".join(lines)


def usable_device_bytes(machine: MachineSpec) -> int:
    """Device bytes the plan may fill: min(90 % of total, free) − fixed allowance."""
    allowance = CUDA_FIXED_ALLOWANCE if machine.device == "cuda" else HOST_FIXED_ALLOWANCE
    cap = min(int(machine.device_total_bytes * (1 - MARGIN_FRACTION)), machine.device_free_bytes)
    return max(cap - allowance, 0)


def usable_host_bytes(machine: MachineSpec) -> int:
    """CPU RAM for env workers on a GPU machine (same margin rule as the device)."""
    cap = min(int(machine.cpu_ram_bytes * (1 - MARGIN_FRACTION)), machine.host_free_bytes)
    return max(cap - HOST_FIXED_ALLOWANCE, 0)


def core_limit(cores: int, cores_per_env: float = 1.0) -> int:
    """Env workers the cores can keep busy: one core stays with the main
    process (batched inference, IPC) when there are more than two."""
    spare = cores - 1 if cores > 2 else cores
    return max(int(spare // cores_per_env), 1)


@attrs.frozen
class _Phases:
    rollout: dict[str, int]
    update: dict[str, int]

    def peaks(self) -> dict[str, int]:
        return {"rollout": sum(self.rollout.values()), "update": sum(self.update.values())}


def _phases(
    machine: MachineSpec,
    policy: PolicyFootprint,
    backend: BackendFootprint,
    n_env: int,
    inference_batch: int,
    micro_batch: int,
    checkpointing: bool,
) -> _Phases:
    weights = model_bytes(policy)  # ONE copy, independent of n_env
    state = optimizer_state_bytes(policy)
    envs = n_env * backend.env_ram_bytes if machine.device == "cpu" else 0
    rollout = {
        "weights": weights,
        "optimizer_state": state,
        "kv_cache": kv_cache_bytes(policy, inference_batch),
        "activations": rollout_activation_bytes(policy, inference_batch),
    }
    update = {
        "weights": weights,
        "optimizer_state": state,
        "gradients": grad_bytes(policy),
        "activations": update_activation_bytes(policy, micro_batch, checkpointing),
    }
    if machine.device == "cpu":
        rollout["env_workers"] = envs
        update["env_workers"] = envs
    else:
        # made by the first chunk, kept with the sampler through the update
        rollout["fused_projections"] = update["fused_projections"] = fused_projection_bytes(policy)
    return _Phases(rollout, update)


def _largest_fitting(limit: int, fits) -> int:
    """Largest n in 1..limit with fits(n) (fits is monotone); 0 if none."""
    if limit < 1 or not fits(1):
        return 0
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _min_peak(machine: MachineSpec, policy: PolicyFootprint, backend: BackendFootprint) -> int:
    """Smallest possible device peak: 1 env (on CPU), batch 1, micro-batch 1, checkpointing
    if the update has it."""
    n_env = 1 if machine.device == "cpu" else 0
    ckpt = ACTIVATION_CHECKPOINTING_AVAILABLE
    return max(_phases(machine, policy, backend, n_env, 1, 1, ckpt).peaks().values())


def _needed_device_total(machine: MachineSpec, peak: int) -> int:
    allowance = CUDA_FIXED_ALLOWANCE if machine.device == "cuda" else HOST_FIXED_ALLOWANCE
    return math.ceil((peak + allowance) / (1 - MARGIN_FRACTION))


def plan(
    machine: MachineSpec,
    policy: PolicyFootprint,
    backend: BackendFootprint,
    *,
    rollouts_per_update: int,
    train_batch: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    replan_every: int = 5,
    inference_cost: InferenceCost | None = None,
    episode_steps: int | None = None,
) -> ParallelPlan:
    """Choose env workers, batch sizes, checkpointing and the rollout schedule.

    ``train_batch`` is the number of samples (chunks) per optimizer step;
    default ``rollouts_per_update``. ``overrides`` maps any of
    :data:`PLAN_FIELDS` to the user's value: it wins, the dependent fields
    are re-derived around it, and the plan reports when it does not fit.
    ``replan_every`` (env steps per chunk), ``inference_cost`` (default:
    :meth:`InferenceCost.estimate`) and, when known, ``episode_steps`` (the
    ramp of short episodes counts) decide ``pipeline_groups``.
    """
    if rollouts_per_update < 1:
        raise ValueError(f"rollouts_per_update must be >= 1, got {rollouts_per_update}")
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(PLAN_FIELDS)
    if unknown:
        raise ValueError(f"unknown plan override(s) {sorted(unknown)}: valid are {PLAN_FIELDS}")
    for key, value in overrides.items():
        if key != "activation_checkpointing" and (not isinstance(value, int) or value < 1):
            raise ValueError(f"override {key} must be an integer >= 1, got {value!r}")
    train_batch = rollouts_per_update if train_batch is None else train_batch
    if train_batch < 1:
        raise ValueError(f"train_batch must be >= 1, got {train_batch}")

    reasons: list[str] = []
    usable = usable_device_bytes(machine)
    host_usable = usable_host_bytes(machine)
    dev = "GPU" if machine.device == "cuda" else "CPU RAM (model and env workers share it)"
    allowance = CUDA_FIXED_ALLOWANCE if machine.device == "cuda" else HOST_FIXED_ALLOWANCE
    reasons.append(
        f"budget: {fmt_gb(usable)} usable of {fmt_gb(machine.device_total_bytes)} {dev} "
        f"(free {fmt_gb(machine.device_free_bytes)}; {MARGIN_FRACTION:.0%} margin + "
        f"{fmt_gb(allowance)} fixed allowance for "
        f"{'CUDA context/allocator' if machine.device == 'cuda' else 'OS and interpreter'})"
    )
    w, st = model_bytes(policy), optimizer_state_bytes(policy)
    moments = "8-bit" if policy.optimizer_moments == "8bit" else "fp32"
    state_b = f"{optimizer_state_bytes_per_trainable(policy):.3g} B"
    precision = (
        f"bf16 weights + fp32 master copy + {moments} AdamW moments ({state_b} per trainable param)"
        if policy.dtype_bytes == 2
        else f"fp32 weights + {moments} AdamW moments ({state_b} per trainable param)"
    )
    reasons.append(
        f"model: {policy.name}, {policy.n_params / 1e9:.3g}B params in {policy.dtype_name} = "
        f"{fmt_gb(w)}, held once by the main process (env workers hold no model copy); "
        f"strategy {policy.strategy}: {policy.n_trainable / 1e6:.4g}M trainable, {precision} "
        f"= {fmt_gb(st)} kept across phases, + {fmt_gb(grad_bytes(policy))} fp32 gradients "
        "during the update"
    )

    # --- env workers -----------------------------------------------------------
    by_cores = core_limit(machine.cpu_cores, backend.cores_per_env)
    min_model = _min_peak(machine, policy, backend) - (
        backend.env_ram_bytes if machine.device == "cpu" else 0
    )
    ram_pool = (usable - min_model) if machine.device == "cpu" else host_usable
    by_ram = max(ram_pool // backend.env_ram_bytes, 0)
    auto_env = max(min(by_cores, by_ram, rollouts_per_update), 1)
    limits = {"cores": by_cores, "RAM": by_ram, "rollouts per update": rollouts_per_update}
    binding = min(limits, key=lambda k: limits[k])
    n_env = overrides.get("n_env_workers", auto_env)
    core_note = (
        f"{machine.cpu_cores} cores − 1 for the main process"
        if machine.cpu_cores > 2
        else f"{machine.cpu_cores} cores (too few to reserve one for the main process)"
    )
    reasons.append(
        f"env workers: {auto_env} = min(cores: {by_cores} [{core_note}, "
        f"{backend.cores_per_env:g} core per env], RAM: {by_ram} [{backend.name} env ≈ "
        f"{fmt_gb(backend.env_ram_bytes)} each, {fmt_gb(max(ram_pool, 0))} "
        f"{'left beside the model' if machine.device == 'cpu' else 'host RAM usable'}], "
        f"rollouts per update: {rollouts_per_update}); bound by {binding}"
        + (" — no room for even one env" if by_ram < 1 else "")
    )
    steps_per_s = n_env / backend.env_step_seconds
    waves = math.ceil(rollouts_per_update / n_env)
    reasons.append(
        f"env stepping: {n_env} workers × 1/{backend.env_step_seconds * 1e3:.3g} ms ≈ "
        f"{steps_per_s:,.0f} env steps/s; {rollouts_per_update} rollouts run in {waves} wave(s)"
    )
    if "n_env_workers" in overrides:
        reasons.append(f"override: n_env_workers = {n_env} (planner's choice: {auto_env})")
        if n_env > rollouts_per_update:
            reasons.append(
                f"note: {n_env} workers > {rollouts_per_update} rollouts per update: "
                f"{n_env - rollouts_per_update} stay idle"
            )
        if n_env > by_cores:
            reasons.append(f"note: {n_env} workers on {by_cores} spare cores oversubscribe the CPU")

    def fits_rollout(b: int, ckpt: bool = True) -> bool:
        return _phases(machine, policy, backend, n_env, b, 1, ckpt).peaks()["rollout"] <= usable

    def fits_update(m: int, ckpt: bool, fp: PolicyFootprint = policy) -> bool:
        return _phases(machine, fp, backend, n_env, 1, m, ckpt).peaks()["update"] <= usable

    # --- inference batch ---------------------------------------------------------
    auto_inf = _largest_fitting(n_env, fits_rollout)
    inf = overrides.get("inference_batch", max(auto_inf, 1))
    per_sample = kv_cache_bytes(policy) + rollout_activation_bytes(policy, 1)
    if auto_inf == n_env:
        reasons.append(
            f"inference batch {auto_inf}: one batched forward over all {n_env} live envs "
            f"(KV cache {fmt_gb(kv_cache_bytes(policy))} per sample for "
            f"{policy.prefix_tokens} prefix tokens; ≈ {fmt_gb(per_sample)} per sample in all)"
        )
    elif auto_inf > 0:
        reasons.append(
            f"inference batch {auto_inf}: all {n_env} live envs at once would not fit "
            f"(≈ {fmt_gb(per_sample)} per sample); their observations are split into "
            f"{math.ceil(n_env / auto_inf)} forwards"
        )
    else:
        reasons.append(
            f"inference batch: even one sample does not fit beside the model and the "
            f"optimizer state (≈ {fmt_gb(per_sample)} per sample)"
        )
    if "inference_batch" in overrides:
        reasons.append(f"override: inference_batch = {inf} (planner's choice: {auto_inf})")
        if inf > n_env:
            reasons.append(
                f"note: inference batch {inf} > {n_env} live envs; batches hold at most {n_env}"
            )

    # --- rollout schedule: how many worker groups overlap the policy -------------
    cost = inference_cost or InferenceCost.estimate(policy, machine)
    chunk_s = replan_every * backend.env_step_seconds
    decisions = None if episode_steps is None else max(1, math.ceil(episode_steps / replan_every))
    pipe = choose_pipeline(
        n_env,
        chunk_s,
        cost,
        inference_batch=inf,
        replan_every=replan_every,
        override=overrides.get("pipeline_groups"),
        decisions=decisions,
    )
    reasons.append(
        f"rollout schedule: one chunk of {replan_every} env steps ≈ {chunk_s * 1e3:.4g} ms per "
        f"env; a policy call ≈ {cost.call_s * 1e3:.3g} ms + {cost.per_sample_s * 1e3:.3g} ms "
        f"× batch ({cost.source}); "
        + "; ".join(
            f"G={o.groups}: period {o.period_s * 1e3:.4g} ms, policy busy {o.policy_util:.0%}, "
            f"envs busy {o.env_util:.0%}"
            for o in pipe.options[: min(len(pipe.options), 4)]
        )
    )
    if pipe.overridden:
        auto = choose_pipeline(
            n_env,
            chunk_s,
            cost,
            inference_batch=inf,
            replan_every=replan_every,
            decisions=decisions,
        ).groups
        reasons.append(f"override: pipeline_groups = {pipe.groups} (planner's choice: {auto})")
    elif pipe.groups == 1:
        reasons.append(
            f"pipeline_groups 1 (lock-step): no group count shortens the "
            f"{'period' if decisions is None else f'wave of {decisions}-decision episodes'} "
            f"by {PIPELINE_MIN_GAIN:.0%} or more"
        )
    else:
        reasons.append(
            f"pipeline_groups {pipe.groups}: groups of {max(pipe.chosen.group_sizes)} envs step "
            f"while the policy serves the others; predicted {pipe.speedup:.2f}× the env steps/s "
            f"of lock-step ({pipe.chosen.steps_per_s:,.0f} vs {pipe.lockstep.steps_per_s:,.0f})"
        )

    # --- micro-batch / checkpointing --------------------------------------------
    want = min(train_batch, MIN_EFFICIENT_MICRO_BATCH)
    no_ckpt = _largest_fitting(train_batch, lambda m: fits_update(m, False))
    with_ckpt = _largest_fitting(train_batch, lambda m: fits_update(m, True))
    act1 = update_activation_bytes(policy, 1, False)
    act1c = update_activation_bytes(policy, 1, True)
    if "activation_checkpointing" in overrides:
        ckpt = bool(overrides["activation_checkpointing"])
        auto_micro = with_ckpt if ckpt else no_ckpt
        reasons.append(
            f"override: activation_checkpointing = {'on' if ckpt else 'off'} "
            f"(activations {fmt_gb(act1c if ckpt else act1)} per sample)"
        )
    elif not ACTIVATION_CHECKPOINTING_AVAILABLE:
        ckpt, auto_micro = False, no_ckpt
        reasons.append(
            f"activation checkpointing off (not chosen automatically until its memory model is "
            f"validated on a GPU): micro-batch {no_ckpt} fits without it ({fmt_gb(act1)} of "
            f"activations per sample; with it {fmt_gb(act1c)} per sample and micro-batch "
            f"{with_ckpt} would fit: set update.activation_checkpointing: on)"
        )
    elif no_ckpt >= want:
        ckpt, auto_micro = False, no_ckpt
        reasons.append(
            f"activation checkpointing off: without it a micro-batch of {no_ckpt} fits "
            f"({fmt_gb(act1)} of activations per sample), ≥ the {want} wanted; "
            "checkpointing would cost ≈ 33 % more compute for nothing"
        )
    else:
        ckpt, auto_micro = True, with_ckpt
        reasons.append(
            f"activation checkpointing on: without it only a micro-batch of {no_ckpt} fits "
            f"({fmt_gb(act1)} of activations per sample); with it {fmt_gb(act1c)} per sample "
            f"and micro-batch {with_ckpt}"
        )
        if policy.optimizer_moments == "fp32" and policy.n_trainable:
            # recomputation costs ≈ 1/3 more compute (~31 % MFU for full pi0 on
            # an H100, docs/benchmarks.md); 8-bit moments may make room instead
            lean = attrs.evolve(policy, optimizer_moments="8bit")
            lean_micro = _largest_fitting(train_batch, lambda m: fits_update(m, False, lean))
            if lean_micro >= want:
                freed = optimizer_state_bytes(policy) - optimizer_state_bytes(lean)
                reasons.append(
                    f"note: optim.moments: 8bit (bitsandbytes, pip install 'ript-core[bnb]') "
                    f"would free {fmt_gb(freed)} of AdamW state: micro-batch {lean_micro} "
                    "without checkpointing"
                )
    if "train_micro_batch" in overrides:
        micro = overrides["train_micro_batch"]
        accum = overrides.get("grad_accum", math.ceil(train_batch / micro))
    elif "grad_accum" in overrides:
        accum = overrides["grad_accum"]
        micro = math.ceil(train_batch / accum)
    else:
        micro = max(auto_micro, 1)
        accum = math.ceil(train_batch / micro)
        micro = math.ceil(train_batch / accum)  # balance: same steps, smaller peak
    reasons.append(
        f"training: {train_batch} samples per optimizer step in {accum} gradient accumulation "
        f"step(s) of micro-batch ≤ {micro}"
        + (f" (largest fitting micro-batch: {auto_micro})" if auto_micro != micro else "")
    )
    for key in ("train_micro_batch", "grad_accum"):
        if key in overrides:
            reasons.append(f"override: {key} = {overrides[key]}")
    if micro * accum != train_batch and ({"train_micro_batch", "grad_accum"} & set(overrides)):
        reasons.append(
            f"note: micro-batch {micro} × accumulation {accum} = {micro * accum} samples "
            f"per optimizer step, not the {train_batch} asked"
        )

    # --- verdict ---------------------------------------------------------------------
    phases = _phases(machine, policy, backend, n_env, inf, micro, ckpt)
    peaks = phases.peaks()
    fits = True
    for phase, peak in peaks.items():
        if peak > usable:
            fits = False
            what = "overridden plan" if overrides else "smallest plan"
            reasons.append(
                f"does not fit: {phase} phase of the {what} needs {fmt_gb(peak)} > "
                f"{fmt_gb(usable)} usable (over by {fmt_gb(peak - usable)})"
            )
    host = n_env * backend.env_ram_bytes
    if machine.device == "cuda" and n_env * backend.env_ram_bytes > host_usable:
        fits = False
        reasons.append(
            f"does not fit: {n_env} env workers need {fmt_gb(n_env * backend.env_ram_bytes)} "
            f"of CPU RAM > {fmt_gb(host_usable)} usable"
        )
    if fits:
        headroom = usable - max(peaks.values())
        reasons.append(
            f"fits: peak {fmt_gb(max(peaks.values()))} (rollout {fmt_gb(peaks['rollout'])}, "
            f"update {fmt_gb(peaks['update'])}) leaves {fmt_gb(headroom)} of the usable budget"
        )
    recommended = None
    if not fits:
        reasons.extend(_what_would_fit(machine, policy, backend, overrides, rollouts_per_update))
        rec = recommend_strategy(machine, policy, backend)
        if rec is not None and rec[0] != policy.strategy:
            recommended = rec[0]
            reasons.append(rec[1])

    return ParallelPlan(
        n_env_workers=n_env,
        inference_batch=inf,
        train_micro_batch=micro,
        grad_accum=accum,
        activation_checkpointing=ckpt,
        train_batch=train_batch,
        peak_bytes=peaks,
        breakdown={"rollout": phases.rollout, "update": phases.update},
        usable_bytes=usable,
        host_bytes=host,
        host_usable_bytes=host_usable,
        fits=fits,
        reasons=reasons,
        strategy=policy.strategy,
        overridden=tuple(k for k in PLAN_FIELDS if k in overrides),
        pipeline=pipe,
        recommended_strategy=recommended,
    )


#: Fall-back order when a strategy does not fit: the one giving up least first.
#: ``lora`` before ``expert``: its adapters still change the VLM's features
#: (RIPT-VLA's recipe); ``expert`` leaves the VLM exactly as pre-trained.
STRATEGY_PREFERENCE: tuple[Strategy, ...] = ("full", "lora", "expert")


def recommend_strategy(
    machine: MachineSpec,
    policy: PolicyFootprint,
    backend: BackendFootprint,
    *,
    lora: Any | None = None,
) -> tuple[Strategy, str] | None:
    """The cheapest change that fits: the first of :data:`STRATEGY_PREFERENCE`
    (most to least trainable) whose smallest plan (1 env, batch 1,
    micro-batch 1, checkpointing) fits the device, and why in one sentence;
    ``None`` when none does (a bigger device or bf16 is then the fix)."""
    usable = usable_device_bytes(machine)
    peaks = {
        s: _min_peak(machine, policy.for_strategy(s, lora=lora), backend)
        for s in STRATEGY_PREFERENCE
    }
    fitting = [s for s in STRATEGY_PREFERENCE if peaks[s] <= usable]
    if not fitting:
        return None
    best = fitting[0]
    fp = policy.for_strategy(best, lora=lora)
    worse = [s for s in STRATEGY_PREFERENCE[: STRATEGY_PREFERENCE.index(best)]]
    why = "; ".join(f"{s} needs ≥ {fmt_gb(peaks[s])} even at its smallest plan" for s in worse)
    what = {
        "full": "every weight trains",
        "lora": (
            f"{fp.n_adapter_params / 1e6:.4g}M adapter parameters on frozen base weights"
            + (" (the VLM prefix still back-propagates)" if fp.grads_through_vlm else "")
        ),
        "expert": (
            "the action expert and projections train, the VLM is frozen and its prefix runs "
            "without gradients"
        ),
    }[best]
    return best, (
        f"recommended: strategy {best} — {why + '; ' if why else ''}{best} trains "
        f"{fp.n_trainable / 1e6:.4g}M parameters ({what}) and its smallest plan peaks at "
        f"{fmt_gb(peaks[best])} of {fmt_gb(usable)} usable; it is the first of "
        f"{' → '.join(STRATEGY_PREFERENCE)} (most to least trainable) that fits"
    )


@attrs.frozen
class StrategyCost:
    """One strategy's memory, itemised for ``ript plan`` (bytes)."""

    strategy: Strategy
    n_trainable: int
    trainable_weight_bytes: int
    frozen_weight_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    activations_per_sample: int
    activations_per_sample_ckpt: int
    prefix_cache_per_sample: int
    plan: ParallelPlan


def strategy_costs(
    machine: MachineSpec,
    policy: PolicyFootprint,
    backend: BackendFootprint,
    *,
    rollouts_per_update: int,
    lora: Any | None = None,
    **plan_kwargs: Any,
) -> list[StrategyCost]:
    """Every built-in strategy on this machine: parameters, weights split into
    trainable / frozen, gradients, AdamW state, update activations per sample
    with and without checkpointing, the rollout-time prefix KV cache per
    sample, and the planner's own plan for it (no overrides)."""
    out: list[StrategyCost] = []
    for s in STRATEGY_PREFERENCE:
        fp = policy.for_strategy(s, lora=lora)
        trainable_w = fp.n_trainable * fp.dtype_bytes
        out.append(
            StrategyCost(
                strategy=s,
                n_trainable=fp.n_trainable,
                trainable_weight_bytes=trainable_w,
                frozen_weight_bytes=model_bytes(fp) - trainable_w,
                grad_bytes=grad_bytes(fp),
                optimizer_bytes=optimizer_state_bytes(fp),
                activations_per_sample=update_activation_bytes(fp, 1, False),
                activations_per_sample_ckpt=update_activation_bytes(fp, 1, True),
                prefix_cache_per_sample=kv_cache_bytes(fp),
                plan=plan(
                    machine, fp, backend, rollouts_per_update=rollouts_per_update, **plan_kwargs
                ),
            )
        )
    return out


def _show(value: int | bool) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def _what_would_fit(
    machine: MachineSpec,
    policy: PolicyFootprint,
    backend: BackendFootprint,
    overrides: Mapping[str, Any],
    rollouts_per_update: int,
) -> list[str]:
    """Advice when a plan does not fit: the planner's own choice, cheaper
    strategies, bf16, or the device size that would hold the smallest plan."""
    out: list[str] = []
    if overrides:
        auto = plan(machine, policy, backend, rollouts_per_update=rollouts_per_update)
        if auto.fits:
            s = auto.settings()
            return [
                "would fit: drop the overrides; the planner's choice is "
                + ", ".join(f"{k}={_show(v)}" for k, v in s.items())
            ]
    min_peak = _min_peak(machine, policy, backend)
    if min_peak > usable_device_bytes(machine):
        if policy.strategy in ("full", "expert", "lora"):
            for alt in ("expert", "lora"):
                if alt == policy.strategy:
                    continue
                alt_fp = policy.for_strategy(alt)
                if _min_peak(machine, alt_fp, backend) <= usable_device_bytes(machine):
                    out.append(
                        f"would fit: use strategy {alt} ({alt_fp.n_trainable / 1e6:.4g}M trainable; "
                        f"smallest peak {fmt_gb(_min_peak(machine, alt_fp, backend))})"
                    )
        if policy.dtype_bytes == 4:
            bf = attrs.evolve(policy, dtype_bytes=2)
            if _min_peak(machine, bf, backend) <= usable_device_bytes(machine):
                out.append("would fit: load the policy in bf16 (dtype bfloat16)")
        need = _needed_device_total(machine, min_peak)
        kind = "a GPU" if machine.device == "cuda" else "a machine (or a GPU)"
        out.append(
            f"would fit: {kind} with ≥ {math.ceil(need / GB)} GB for strategy "
            f"{policy.strategy} in {policy.dtype_name} (smallest plan peaks at {fmt_gb(min_peak)})"
        )
    elif machine.device == "cuda":
        need = math.ceil(backend.env_ram_bytes / GB + HOST_FIXED_ALLOWANCE / GB)
        out.append(f"would fit: fewer env workers, or ≥ {need} GB of free CPU RAM")
    return out


# ============================================================================
# the real machine
# ============================================================================


def _meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                out[key] = int(parts[0]) * 1024  # kB
    except OSError:
        pass
    return out


def _cgroup_limit() -> int | None:
    """A container's memory limit (cgroup v2, then v1), None when unlimited."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def detect_machine() -> MachineSpec:
    """This machine: CUDA device 0's total/free memory if there is one, the
    usable cores (affinity mask) and RAM from /proc/meminfo (capped by a
    cgroup limit) — no psutil needed."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    info = _meminfo()
    total = info.get("MemTotal", 0)
    free = info.get("MemAvailable", total)
    limit = _cgroup_limit()
    if limit is not None:
        total, free = min(total, limit) if total else limit, min(free, limit) if free else limit
    if not total:
        raise RuntimeError("cannot read the RAM size from /proc/meminfo: pass it explicitly")
    import torch

    if torch.cuda.is_available():
        dev_free, dev_total = torch.cuda.mem_get_info()
        # what this process's torch already holds is the policy (a plan counts
        # its weights itself) or allocator cache (reusable): counted as used, the
        # trainer -- which plans after loading the policy -- charged the weights
        # twice, plus the cached blocks of a float32 build cast to bf16 (68.6
        # instead of ~75 GB usable for full pi0 on the H100)
        dev_free += torch.cuda.memory_reserved()
        return MachineSpec(
            "cuda",
            int(dev_total),
            int(min(dev_free, dev_total)),
            total,
            cores,
            free,
            name=torch.cuda.get_device_name(),
        )
    return MachineSpec("cpu", total, free, total, cores, free, name="cpu")
