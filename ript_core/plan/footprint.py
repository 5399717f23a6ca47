"""What the planner knows about a policy and a backend: counts, dtype, shapes.

:class:`PolicyFootprint` holds a PI0 policy's parameter counts and the
architecture numbers that decide its activation memory; it is built from a
named preset (``ript_core.policy.io.presets``, the one source of PI0's shapes)
or from a transformers ``PI0Config``, and trained with a strategy
(:meth:`PolicyFootprint.for_strategy`). A backend's per-env cost is
:class:`~ript_core.envs.spec.BackendFootprint`, which each backend spec brings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ript_core.envs.spec import BackendFootprint
from ript_core.policy.io.presets import preset_dict

#: ``optim.moments``: how AdamW stores its two moments (4 or 1 byte each); the
#: optimizer (ript_core.rl.optimizer) builds from this list, the cost model budgets it.
OPTIMIZER_MOMENTS = ("fp32", "8bit")

__all__ = [
    "OPTIMIZER_MOMENTS",
    "BackendFootprint",
    "PolicyFootprint",
    "Strategy",
    "TransformerDims",
    "count_pi0_params",
]

Strategy = str  # "full" | "expert" | "lora" | any name a plug-in strategy gives


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

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | Any, *, gated_mlp: bool) -> TransformerDims:
        """From a transformers sub-config (Gemma, SigLIP), or its dict as a
        preset writes it; no ``head_dim`` / ``num_key_value_heads``: plain
        multi-head attention, as transformers assumes."""
        if isinstance(config, Mapping):
            get = config.get
        else:

            def get(key: str, default: Any = None) -> Any:
                return getattr(config, key, default)

        heads = get("num_attention_heads")
        return cls(
            get("num_hidden_layers"),
            get("hidden_size"),
            get("intermediate_size"),
            heads,
            get("num_key_value_heads") or heads,
            get("head_dim") or get("hidden_size") // heads,
            gated_mlp=gated_mlp,
        )

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
    transformers' unused expert embedding table, docs/planner.md, unless
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
        n_cameras: int | None = None,
        text_tokens: int | None = None,
        num_steps: int | None = None,
        drop_unused_expert_embedding: bool = True,
    ) -> PolicyFootprint:
        """Full-size openpi pi0: PaliGemma-3B + Gemma-300M action expert (~3.5B as shipped)."""
        return cls.from_preset(
            "pi0",
            dtype_bytes=dtype_bytes,
            n_cameras=n_cameras,
            text_tokens=text_tokens,
            num_steps=num_steps,
            drop_unused_expert_embedding=drop_unused_expert_embedding,
        )

    @classmethod
    def pi0_tiny(cls, *, dtype_bytes: int = 4, num_steps: int | None = None) -> PolicyFootprint:
        """The ``pi0-tiny`` test preset: 64/32 wide, 2 layers each, 2 × 56 px cameras."""
        return cls.from_preset("pi0-tiny", dtype_bytes=dtype_bytes, num_steps=num_steps)

    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        dtype_bytes: int = 2,
        n_cameras: int | None = None,
        text_tokens: int | None = None,
        num_steps: int | None = None,
        drop_unused_expert_embedding: bool = True,
    ) -> PolicyFootprint:
        """A named policy preset (``ript_core.policy.io.presets``), counted from its
        architecture numbers without building a model. ``n_cameras``,
        ``text_tokens``, ``num_steps``: the preset's unless given."""
        raw = preset_dict(name)
        pi0 = raw["pi0"]
        vlm = pi0["vlm_config"]
        vision_cfg = vlm["vision_config"]
        text = TransformerDims.from_config(vlm["text_config"], gated_mlp=True)
        vision = TransformerDims.from_config(vision_cfg, gated_mlp=False)
        expert = TransformerDims.from_config(pi0["dit_config"], gated_mlp=True)
        counts = count_pi0_params(
            text=text,
            vision=vision,
            expert=expert,
            vocab=vlm["text_config"]["vocab_size"],
            patch=vision_cfg["patch_size"],
            image_size=vision_cfg["image_size"],
            projection_in=vision.width,
            action_dim=pi0["max_action_dim"],
            state_dim=pi0["max_state_dim"],
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
            tokens_per_image=(vision_cfg["image_size"] // vision_cfg["patch_size"]) ** 2,
            n_cameras=len(raw["cameras"]) if n_cameras is None else n_cameras,
            text_tokens=raw["max_token_len"] if text_tokens is None else text_tokens,
            chunk_size=pi0["chunk_size"],
            action_dim=pi0["max_action_dim"],
            num_steps=pi0["num_inference_steps"] if num_steps is None else num_steps,
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
        n_params = vlm + expert + (0 if drop_unused_expert_embedding else unused)
        return cls(
            name=str(getattr(config, "name_or_path", "") or "pi0-config"),
            n_params=n_params,
            n_trainable=vlm + expert,
            dtype_bytes=dtype_bytes,
            text=TransformerDims.from_config(tc, gated_mlp=True),
            vision=TransformerDims.from_config(vc, gated_mlp=False),
            expert=TransformerDims.from_config(dc, gated_mlp=True),
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
