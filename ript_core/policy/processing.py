"""A policy's normalisation stats and its pre- and post-processing (part of
:class:`~ript_core.policy.policy.PI0Policy`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ript_core.policy.batch import PolicyBatch
from ript_core.policy.config import PolicyConfig
from ript_core.policy.io.pipeline import CameraSlot, Pipeline
from ript_core.policy.io.presets import Architecture
from ript_core.policy.io.stats import NormStats
from ript_core.policy.io.tokenizer import PromptTokenizer
from ript_core.policy.preprocess import preprocess
from ript_core.policy_input import PolicyInput


class ProcessingMixin:
    """Env inputs -> :class:`PolicyBatch`, model actions -> env actions, and
    the stats both use."""

    config: PolicyConfig
    arch: Architecture
    tokenizer: PromptTokenizer
    pipeline: Pipeline
    camera_slots: tuple[CameraSlot, ...]
    stats: NormStats
    max_state_dim: int
    max_action_dim: int
    action_dim: int
    state_dim: int
    device: torch.device

    def _identity_stats(self) -> NormStats:
        return NormStats.identity(
            self.config.state_dim or self.max_state_dim,
            self.config.action_dim or self.max_action_dim,
        )

    def _check_stats_dims(self, stats: NormStats) -> None:
        if stats.state.dim > self.max_state_dim or stats.actions.dim > self.max_action_dim:
            raise ValueError(
                f"stats have state/action dims {stats.state.dim}/{stats.actions.dim}, the model "
                f"takes at most {self.max_state_dim}/{self.max_action_dim}"
            )
        for name, want, have in (
            ("state_dim", self.config.state_dim, stats.state.dim),
            ("action_dim", self.config.action_dim, stats.actions.dim),
        ):
            if want is not None and want != have:
                raise ValueError(
                    f"config {name}={want} but the normalisation stats have {have} dims"
                )

    def _check_stats(self, stats: NormStats) -> None:
        self._check_stats_dims(stats)
        mask = self.pipeline.delta_action_mask
        if mask is not None and len(mask) > min(stats.actions.dim, stats.state.dim):
            raise ValueError(
                f"the pipeline's delta_action_mask covers {len(mask)} dims but the stats have "
                f"{stats.actions.dim} action and {stats.state.dim} state dims; the mask may be "
                "at most as long as both"
            )

    def set_stats(self, stats: NormStats) -> None:
        """Install normalisation stats (e.g. fitted on demonstrations before BC)."""
        self._check_stats(stats)
        self.stats = stats

    def _check_tokenizer(self) -> None:
        if self.tokenizer.vocab_size > self.arch.text_vocab_size:
            raise ValueError(
                f"tokenizer has {self.tokenizer.vocab_size} tokens, the model's text vocabulary "
                f"only {self.arch.text_vocab_size}"
            )

    def preprocess(self, inputs: Sequence[PolicyInput]) -> PolicyBatch:
        """Env inputs -> a batch on the policy's device (see :mod:`.preprocess`),
        with the checkpoint pipeline's camera slots, resampler and prompt format."""
        return preprocess(
            inputs,
            cameras=self.camera_slots,
            image_size=self.arch.image_size,
            tokenizer=self.tokenizer,
            max_token_len=self.arch.max_token_len,
            stats=self.stats,
            max_state_dim=self.max_state_dim,
            device=self.device,
            resize=self.pipeline.resize,
            prompt_format=self.pipeline.prompt_format,
        )

    def postprocess(self, actions: torch.Tensor, batch: PolicyBatch | None = None) -> np.ndarray:
        """Normalised ``[B, chunk, max_action_dim]`` -> env-unit ``[B, chunk,
        action_dim]`` float32 numpy: un-normalised, made absolute where the
        pipeline's ``delta_action_mask`` says so, sliced to the real dims.

        The delta transform adds the state the chunk was computed from, in
        openpi's form: ``batch.state`` (the normalised float32 model input)
        un-normalised in float64. So ``batch`` -- the one ``actions`` were
        sampled from -- is required when the pipeline has a delta mask. All
        arithmetic is float64 (openpi's numpy output transforms), cast once.
        """
        real = actions[..., : self.action_dim].detach()
        out = self.stats.unnormalize(real, "actions", dtype=torch.float64)
        mask = self.pipeline.delta_action_mask
        if mask is not None:
            if batch is None:
                raise ValueError(
                    f"this checkpoint's pipeline ({self.pipeline.origin}) adds the state to the "
                    "actions (delta_action_mask): call postprocess(actions, batch) with the batch "
                    "the actions were sampled from"
                )
            if len(batch) != out.shape[0]:
                raise ValueError(
                    f"postprocess got {out.shape[0]} action chunks but a batch of {len(batch)}"
                )
            state = self.stats.unnormalize(
                batch.state[..., : self.state_dim].to(out.device), "state", dtype=torch.float64
            )
            n = len(mask)
            keep = torch.tensor(mask, dtype=torch.bool, device=out.device)
            delta = torch.where(keep, state[..., :n], torch.zeros_like(state[..., :n]))
            out = out.clone()
            out[..., :n] += delta[:, None, :]
        return out.to(torch.float32).cpu().numpy()

    def normalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Raw ``[..., action_dim]`` -> normalised and zero-padded to ``max_action_dim``."""
        normed = self.stats.normalize(actions.to(self.device), "actions")
        return F.pad(normed, (0, self.max_action_dim - normed.shape[-1]))
