"""PI0 policy on transformers: presets, preprocessing, ODE/SDE sampling with
exact chain log-probs, BC loss, checkpoint loading and saving.

The names below load on first use (PEP 562): importing a light submodule such
as ``ript_core.policy.config`` must not pull in torch and transformers, so
that ``ript --help`` and config validation answer at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the submodule that defines it
_EXPORTS = {
    "PolicyBatch": "ript_core.policy.batch",
    "CheckpointError": "ript_core.policy.io.checkpoint",
    "load_policy": "ript_core.policy.io.checkpoint",
    "save_policy": "ript_core.policy.io.checkpoint",
    "PolicyConfig": "ript_core.policy.config",
    "PI0Policy": "ript_core.policy.policy",
    "SampleOutput": "ript_core.policy.policy",
    "FeatureStats": "ript_core.policy.io.stats",
    "NormStats": "ript_core.policy.io.stats",
    "build_word_tokenizer": "ript_core.policy.io.tokenizer",
    "load_tokenizer": "ript_core.policy.io.tokenizer",
}

__all__ = [
    "CheckpointError",
    "FeatureStats",
    "NormStats",
    "PI0Policy",
    "PolicyBatch",
    "PolicyConfig",
    "SampleOutput",
    "build_word_tokenizer",
    "load_policy",
    "load_tokenizer",
    "save_policy",
]

if TYPE_CHECKING:
    from ript_core.policy.batch import PolicyBatch
    from ript_core.policy.config import PolicyConfig
    from ript_core.policy.io.checkpoint import CheckpointError, load_policy, save_policy
    from ript_core.policy.io.stats import FeatureStats, NormStats
    from ript_core.policy.io.tokenizer import build_word_tokenizer, load_tokenizer
    from ript_core.policy.policy import PI0Policy, SampleOutput


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
