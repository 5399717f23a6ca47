"""A policy on disk: checkpoints in four layouts, the input/output pipeline,
presets, normalisation stats, tokenizers, and merged exports."""
