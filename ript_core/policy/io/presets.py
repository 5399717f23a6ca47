"""Named architectures: ``pi0`` (openpi's shapes) and ``pi0-tiny`` (CPU toy).

A preset is data, not code: the transformers ``PI0Config`` keyword arguments
plus what the policy's preprocessing needs (camera slots, image size, prompt
length). :func:`resolve_architecture` merges a :class:`PolicyConfig`'s
overrides into it, so the same function serves random init and loading.
"""

from __future__ import annotations

import copy
from typing import Any

import attrs
from transformers import PI0Config

from ript_core.policy.config import PolicyConfig

PALIGEMMA_VOCAB = 257152

# openpi pi0: PaliGemma (gemma_2b + SigLIP So400m/14 at 224 px) + gemma_300m
# expert, 3 cameras, chunk 50, 32-d padded state/actions, 10 Euler steps, 48
# prompt tokens (openpi pi0_config.py; parity checklist B13).
_PI0: dict[str, Any] = {
    "cameras": ["base_0_rgb", "left_wrist_0_rgb", "right_wrist_0_rgb"],
    "max_token_len": 48,
    "image_size": 224,
    "pi0": {
        "vlm_config": {
            "model_type": "paligemma",
            "text_config": {
                "model_type": "gemma",
                "hidden_size": 2048,
                "num_hidden_layers": 18,
                "intermediate_size": 16384,
                "num_attention_heads": 8,
                "num_key_value_heads": 1,
                "head_dim": 256,
                "vocab_size": PALIGEMMA_VOCAB,
            },
            "vision_config": {
                "model_type": "siglip_vision_model",
                "hidden_size": 1152,
                "intermediate_size": 4304,
                "patch_size": 14,
                "image_size": 224,
                "num_hidden_layers": 27,
                "num_attention_heads": 16,
                "vision_use_head": False,
            },
            "projection_dim": 2048,
            "image_token_id": PALIGEMMA_VOCAB,
        },
        "dit_config": {
            "model_type": "gemma",
            "hidden_size": 1024,
            "num_hidden_layers": 18,
            "intermediate_size": 4096,
            "num_attention_heads": 8,
            "num_key_value_heads": 1,
            "head_dim": 256,
        },
        "chunk_size": 50,
        "max_state_dim": 32,
        "max_action_dim": 32,
        "num_inference_steps": 10,
    },
}

# the tiny config (tests, CPU runs): VLM 64 wide, expert 32, 2 layers each, 56 px images
# (16 tokens each), 2 cameras. Heads/head_dim/kv-heads of VLM and expert must
# agree because the expert attends into the VLM's KV cache.
_TINY_VOCAB = 256
_PI0_TINY: dict[str, Any] = {
    "cameras": ["base_0_rgb", "left_wrist_0_rgb"],
    "max_token_len": 16,
    "image_size": 56,
    "pi0": {
        "vlm_config": {
            "model_type": "paligemma",
            "text_config": {
                "model_type": "gemma",
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "intermediate_size": 256,
                "num_attention_heads": 4,
                "num_key_value_heads": 1,
                "head_dim": 16,
                "vocab_size": _TINY_VOCAB,
            },
            "vision_config": {
                "model_type": "siglip_vision_model",
                "hidden_size": 64,
                "intermediate_size": 128,
                "patch_size": 14,
                "image_size": 56,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "vision_use_head": False,
            },
            "projection_dim": 64,
            "image_token_id": _TINY_VOCAB,
        },
        "dit_config": {
            "model_type": "gemma",
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 1,
            "head_dim": 16,
        },
        "chunk_size": 10,
        "max_state_dim": 8,
        "max_action_dim": 8,
        "num_inference_steps": 5,
    },
}

PRESETS: dict[str, dict[str, Any]] = {"pi0": _PI0, "pi0-tiny": _PI0_TINY}


@attrs.frozen
class Architecture:
    """A resolved architecture: the transformers config plus input layout."""

    pi0_config: PI0Config
    cameras: tuple[str, ...]
    max_token_len: int
    image_size: int

    @property
    def tokens_per_image(self) -> int:
        vision = self.pi0_config.vlm_config.vision_config
        return (vision.image_size // vision.patch_size) ** 2

    @property
    def image_token_id(self) -> int:
        return int(self.pi0_config.vlm_config.image_token_id)

    @property
    def text_vocab_size(self) -> int:
        return int(self.pi0_config.vlm_config.text_config.vocab_size)


def preset_names() -> list[str]:
    return sorted(PRESETS)


def preset_dict(name: str) -> dict[str, Any]:
    """A deep copy of a preset's raw description (safe to edit)."""
    if name not in PRESETS:
        raise KeyError(f"unknown policy preset {name!r}; known: {', '.join(preset_names())}")
    return copy.deepcopy(PRESETS[name])


def resolve_architecture(cfg: PolicyConfig, pi0_config: PI0Config | None = None) -> Architecture:
    """Merge ``cfg``'s overrides into its preset (or into ``pi0_config`` when a
    checkpoint brings its own transformers config)."""
    raw = preset_dict(cfg.preset)
    if pi0_config is None:
        kwargs = raw["pi0"]
        if cfg.image_size is not None:
            kwargs["vlm_config"]["vision_config"]["image_size"] = cfg.image_size
        pi0_config = PI0Config(**kwargs)
    else:
        pi0_config = copy.deepcopy(pi0_config)
        if (
            cfg.image_size is not None
            and cfg.image_size != pi0_config.vlm_config.vision_config.image_size
        ):
            raise ValueError(
                f"image_size={cfg.image_size} differs from the checkpoint's "
                f"{pi0_config.vlm_config.vision_config.image_size}: SigLIP position embeddings fix it"
            )
    for ours, theirs in (
        ("chunk_size", "chunk_size"),
        ("max_action_dim", "max_action_dim"),
        ("max_state_dim", "max_state_dim"),
        ("num_steps", "num_inference_steps"),
    ):
        value = getattr(cfg, ours)
        if value is not None:
            setattr(pi0_config, theirs, value)
    pi0_config.vlm_config.text_config._attn_implementation = cfg.attn_implementation
    pi0_config.dit_config._attn_implementation = cfg.attn_implementation
    pi0_config._attn_implementation = cfg.attn_implementation
    return Architecture(
        pi0_config=pi0_config,
        cameras=tuple(cfg.cameras if cfg.cameras is not None else raw["cameras"]),
        max_token_len=cfg.max_token_len if cfg.max_token_len is not None else raw["max_token_len"],
        image_size=int(pi0_config.vlm_config.vision_config.image_size),
    )
