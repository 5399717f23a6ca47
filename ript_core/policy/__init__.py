"""PI0 policy on transformers: presets, preprocessing, ODE/SDE sampling with
exact chain log-probs, BC loss, checkpoint loading and saving."""

from ript_core.policy.batch import PolicyBatch
from ript_core.policy.config import PolicyConfig
from ript_core.policy.io.checkpoint import CheckpointError, load_policy, save_policy
from ript_core.policy.io.stats import FeatureStats, NormStats
from ript_core.policy.io.tokenizer import build_word_tokenizer, load_tokenizer
from ript_core.policy.policy import PI0Policy, SampleOutput

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
