"""``Sequence[PolicyInput]`` (one per env) -> :class:`PolicyBatch`.

This is the checkpoint's half of the observation pipeline (the env's half is
the plugin's adapter): resize-with-pad to the model size, camera slots and
masks, state normalisation with the checkpoint's stats and zero-padding to
the model's state width (normalise first, then pad -- openpi's order,
checklist A9), prompt tokenisation. Batched: images of one slot that share a
size are resized in one call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ript_core.envs.interfaces import PolicyInput
from ript_core.policy.batch import PolicyBatch
from ript_core.policy.images import resize_with_pad
from ript_core.policy.stats import NormStats
from ript_core.policy.tokenizer import PromptTokenizer, tokenize_prompts


def preprocess_images(
    inputs: Sequence[PolicyInput], cameras: Sequence[str], size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``images [B, n_cam, 3, size, size] uint8`` and ``masks [B, n_cam] bool``.

    A slot a sample does not provide is black (-1 after scaling, as openpi's
    zero images) with mask False. A slot name the policy does not know is an
    error: a typo in an adapter would otherwise silently blind the policy.
    """
    known = set(cameras)
    for i, inp in enumerate(inputs):
        unknown = set(inp.images) - known
        if unknown:
            raise KeyError(
                f"input {i} has camera slot(s) {sorted(unknown)} the policy does not have; "
                f"its slots are {list(cameras)}"
            )
    batch = len(inputs)
    images = torch.zeros(batch, len(cameras), 3, size, size, dtype=torch.uint8)
    masks = torch.zeros(batch, len(cameras), dtype=torch.bool)
    for c, slot in enumerate(cameras):
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, inp in enumerate(inputs):
            if slot in inp.images:
                img = np.asarray(inp.images[slot])
                if img.dtype != np.uint8 or img.ndim != 3 or img.shape[-1] != 3:
                    raise ValueError(
                        f"input {i} slot {slot!r}: expected HxWx3 uint8, got {img.dtype} {img.shape}"
                    )
                by_shape.setdefault(img.shape, []).append(i)
        for rows in by_shape.values():
            stack = torch.from_numpy(np.stack([np.asarray(inputs[i].images[slot]) for i in rows]))
            images[rows, c] = resize_with_pad(stack, size)
            masks[rows, c] = True
    return images, masks


def preprocess_state(
    states: Sequence[np.ndarray] | torch.Tensor, stats: NormStats, max_state_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(normalised and padded [B, max_state_dim], raw [B, state_dim])``."""
    raw = torch.as_tensor(np.stack([np.asarray(s, dtype=np.float32) for s in states]))
    if raw.shape[-1] > max_state_dim:
        raise ValueError(f"state has {raw.shape[-1]} dims, the model takes at most {max_state_dim}")
    normed = stats.normalize(raw, "state")
    return F.pad(normed, (0, max_state_dim - normed.shape[-1])), raw


def preprocess(
    inputs: Sequence[PolicyInput],
    *,
    cameras: Sequence[str],
    image_size: int,
    tokenizer: PromptTokenizer,
    max_token_len: int,
    stats: NormStats,
    max_state_dim: int,
    device: torch.device | str = "cpu",
) -> PolicyBatch:
    if not inputs:
        raise ValueError("preprocess needs at least one input")
    images, image_masks = preprocess_images(inputs, cameras, image_size)
    tokens, token_masks = tokenize_prompts(tokenizer, [inp.prompt for inp in inputs], max_token_len)
    state, raw_state = preprocess_state([inp.state for inp in inputs], stats, max_state_dim)
    return PolicyBatch(
        images=images,
        image_masks=image_masks,
        tokens=tokens,
        token_masks=token_masks,
        state=state,
        raw_state=raw_state,
    ).to(device)
