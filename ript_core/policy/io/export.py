"""A trained policy as one self-contained checkpoint: LoRA adapters merged."""

from __future__ import annotations

import attrs

from ript_core.policy.policy import PI0Policy
from ript_core.policy.strategies import has_lora, merge_lora


def merged_policy(policy: PI0Policy, *, dtype: str | None = None) -> PI0Policy:
    """A ``full``-strategy policy with the same outputs: LoRA adapters folded
    into the base weights (in place: ``policy`` is consumed). Its
    :func:`~ript_core.policy.io.checkpoint.save_policy` writes a plain PI0
    checkpoint that transformers' ``from_pretrained`` loads. ``dtype``: the
    merged policy's (default: unchanged); merge a float32 policy for precision."""
    model = policy.model
    if has_lora(model):
        merge_lora(model)
    cfg = attrs.evolve(policy.config, strategy="full", dtype=dtype or policy.config.dtype)
    merged = PI0Policy(cfg, model, policy.arch, policy.tokenizer, policy.stats, policy.pipeline)
    merged.training_env = policy.training_env
    return merged
