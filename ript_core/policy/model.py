"""Building transformers' PI0 model for a policy."""

from __future__ import annotations

import torch
from transformers import PI0ForConditionalGeneration

from ript_core.policy.config import PolicyConfig
from ript_core.policy.io.presets import Architecture


def resolve_device(device: str) -> torch.device:
    """``"auto"``: CUDA when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_model(arch: Architecture, config: PolicyConfig) -> PI0ForConditionalGeneration:
    """Random-init transformers PI0, created directly on the target device (a
    3.5B model is slow to initialise on CPU and copy)."""
    with torch.device(resolve_device(config.device)):
        model = PI0ForConditionalGeneration(arch.pi0_config)
    return model.eval()


def drop_unused_expert_embedding(model: PI0ForConditionalGeneration) -> None:
    """The expert only ever receives ``inputs_embeds``; transformers still
    allocates a vocab x width table for it (263M parameters at full size).
    Removing it is safe: ``GemmaModel`` touches ``embed_tokens`` only when
    given ``input_ids``."""
    if getattr(model.model.dit, "embed_tokens", None) is not None:
        model.model.dit.embed_tokens = None
