"""Driving transformers' PI0: model inputs from a batch, then the two halves
of a forward -- the prefix (SigLIP + Gemma) into a KV cache once, the expert
against it per denoising step (part of :class:`~ript_core.policy.policy.PI0Policy`).

Input convention of transformers' PI0: ``input_ids`` are ``image_token_id``
placeholders (tokens-per-image x cameras) followed by the text ids;
``attention_mask`` is *always* passed -- with ``None`` the prefix gets
1-indexed RoPE positions while the expert continues from the cache length,
and padded prompt tokens would be attended (docs/policy.md, "Facts about
transformers' PI0"). A missing camera keeps its tokens (masked out in ``attention_mask``, positions
``cumsum(mask) - 1`` skip them, as openpi), so ``pixel_attention_mask`` is all
True for the slots present in ``input_ids``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import PI0ForConditionalGeneration

from ript_core.policy.activation_checkpointing import (
    activation_checkpointing,
    frozen_view,
    recording_cache,
)
from ript_core.policy.batch import PolicyBatch
from ript_core.policy.config import PolicyConfig
from ript_core.policy.fast.kv_only_layer import last_layer_kv_only
from ript_core.policy.images import to_model_range
from ript_core.policy.io.presets import Architecture


class ForwardMixin:
    """Model inputs, the prefix encoding and the expert's velocity."""

    config: PolicyConfig
    arch: Architecture
    model: PI0ForConditionalGeneration
    dtype: torch.dtype

    def _vlm_needs_grad(self) -> bool:
        return torch.is_grad_enabled() and any(
            p.requires_grad for p in self.model.model.vlm.parameters()
        )

    def model_inputs(self, batch: PolicyBatch) -> dict[str, torch.Tensor]:
        """The keyword arguments transformers' PI0 takes, from a batch."""
        images, image_masks = batch.images, batch.image_masks
        if self.config.drop_missing_cameras:
            # host booleans when preprocessing recorded them: reading the
            # device masks would wait for the GPU (batch.py)
            present = batch.cameras_present
            if present is None:
                present = tuple(bool(x) for x in image_masks.any(dim=0).tolist())
            # no camera at all: one fully masked slot is kept
            keep = list(present) if any(present) else [True] + [False] * (len(present) - 1)
            if not all(keep):
                # slices, not a list index (whose copy to the GPU would sync)
                slots = [c for c, k in enumerate(keep) if k]
                images = torch.cat([images[:, c : c + 1] for c in slots], dim=1)
                image_masks = torch.cat([image_masks[:, c : c + 1] for c in slots], dim=1)
        bsz, n_cam = image_masks.shape
        tpi = self.arch.tokens_per_image
        image_ids = torch.full(
            (bsz, n_cam * tpi), self.arch.image_token_id, dtype=torch.long, device=batch.device
        )
        attention_mask = torch.cat(
            [image_masks.repeat_interleave(tpi, dim=1), batch.token_masks], dim=1
        ).long()
        return {
            "input_ids": torch.cat([image_ids, batch.tokens], dim=1),
            "attention_mask": attention_mask,
            "pixel_values": to_model_range(images, self.dtype),
            "pixel_attention_mask": torch.ones(bsz, n_cam, dtype=torch.bool, device=batch.device),
            # float32 even under bf16: the state projection stays float32 (precision.py)
            "state": batch.state,
        }

    def encode_prefix(self, inputs: dict[str, torch.Tensor]) -> tuple[Any, int]:
        """Run the VLM once over images + prompt; returns ``(kv_cache, prefix_len)``.

        Gradients flow into the VLM only if grad mode is on and some VLM
        parameter is trainable; otherwise the prefix is computed without a graph.
        """
        grad = self._vlm_needs_grad()
        # under activation checkpointing a recomputed layer must find the cache
        # as it was: a recording cache for the prefix, a frozen view for the
        # expert (ript_core.policy.activation_checkpointing)
        ckpt = activation_checkpointing(self.model)
        # the last Gemma layer only fills the cache: the rest of it is dead
        # work for PI0 (kv_only_layer.py), and so is last_hidden_state
        lm = self.model.model.vlm.language_model
        with torch.set_grad_enabled(grad), last_layer_kv_only(lm):
            attention_mask = inputs["attention_mask"]
            position_ids = attention_mask.cumsum(-1) - 1
            embeds = self.model.model.embed_prefix(
                inputs["input_ids"], inputs["pixel_values"], inputs["pixel_attention_mask"]
            )
            token_type_ids = torch.zeros_like(embeds)[:, :, 0]
            cache = self.model.model.vlm(
                inputs_embeds=embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                token_type_ids=token_type_ids,
                use_cache=True,
                cache=recording_cache() if ckpt else None,
            ).cache
        if ckpt:
            cache = frozen_view(cache)
        return cache, cache.get_seq_length()

    def velocity(
        self,
        inputs: dict[str, torch.Tensor],
        cache: Any,
        prefix_len: int,
        x: torch.Tensor,
        t: torch.Tensor,
    ) -> torch.Tensor:
        """Expert forward against the cached prefix: ``v(x, t)`` as float32.

        The cache is cropped back to the prefix afterwards, as transformers
        does, so the next step does not attend to this step's tokens.
        """
        out = self.model(
            state=inputs["state"],
            noise=x,
            timestep=t,
            pixel_attention_mask=inputs["pixel_attention_mask"],
            attention_mask=inputs["attention_mask"],
            cache=cache,
        )
        cache.crop(prefix_len - cache.get_seq_length())
        return out.logits.to(torch.float32)
