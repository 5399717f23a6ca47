"""``Sequence[PolicyInput]`` (one per env) -> :class:`PolicyBatch`.

This is the checkpoint's half of the observation pipeline (the env's half is
the plugin's adapter), driven by the checkpoint's :class:`~ript_core.policy.
pipeline.Pipeline`: resize-with-pad to the model size with its resampler,
camera slots and masks, state normalisation with the checkpoint's stats and
zero-padding to the model's state width (normalise first, then pad --
openpi's order, checklist A9), prompt tokenisation in its format. Batched:
images of one slot that share a size are resized in one call.

The state is normalised from the precision it arrives in: a float64 state
(LIBERO's, as openpi's client sends it) gives the same float32 model input as
openpi's ``Normalize`` bit for bit; rounding it to float32 first would not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ript_core.policy.batch import PolicyBatch, to_device
from ript_core.policy.images import ResizeMethod, resize_with_pad
from ript_core.policy.io.pipeline import CameraSlot
from ript_core.policy.io.stats import NormStats
from ript_core.policy.io.tokenizer import PromptFormat, PromptTokenizer, tokenize_prompts
from ript_core.policy_input import PolicyInput


def preprocess_images(
    inputs: Sequence[PolicyInput],
    cameras: Sequence[str | CameraSlot],
    size: int,
    resize: ResizeMethod = "torch",
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``images [B, n_cam, 3, size, size] uint8`` and ``masks [B, n_cam] bool``.

    With the torch resamplers the images travel at their native size
    (pinned, non-blocking on CUDA) and are resized on ``device``: the host
    does no per-pixel work (resizing on the CPU cost milliseconds per sample
    of every policy call, docs/policy.md). ``"pil"`` resizes on the CPU, as openpi's client.

    A slot a sample does not provide is black (-1 after scaling, as openpi's
    zero images) with mask False (``if_missing="mask"``), True (``"zeros"``)
    or an error (``"error"``). An input key no slot reads is an error: a typo
    in an adapter would otherwise silently blind the policy.
    """
    slots = [c if isinstance(c, CameraSlot) else CameraSlot(c) for c in cameras]
    known = {c.key for c in slots}
    for i, inp in enumerate(inputs):
        unknown = set(inp.images) - known
        if unknown:
            raise KeyError(
                f"input {i} has camera slot(s) {sorted(unknown)} the policy does not have; "
                f"its slots read {sorted(known)}"
            )
        for c in slots:
            if c.if_missing == "error" and c.key not in inp.images:
                raise KeyError(
                    f"input {i} has no image {c.key!r}, which the checkpoint's camera slot "
                    f"{c.name!r} requires (its pipeline says if_missing='error')"
                )
    batch = len(inputs)
    device = torch.device(device)
    on_device = device if resize != "pil" else torch.device("cpu")
    images = torch.zeros(batch, len(slots), 3, size, size, dtype=torch.uint8, device=on_device)
    masks = torch.zeros(batch, len(slots), dtype=torch.bool)
    for c, cam in enumerate(slots):
        slot = cam.key
        if cam.if_missing == "zeros":
            masks[:, c] = True  # a black image that is attended (openpi pi0-FAST)
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
            resized = resize_with_pad(to_device(stack, on_device), size, resize)
            if len(rows) == batch:
                images[:, c] = resized
            else:
                # a list index would be copied to the GPU with a host sync
                images[to_device(torch.tensor(rows), on_device), c] = resized
            masks[rows, c] = True
    return images, masks


def preprocess_state(
    states: Sequence[np.ndarray] | torch.Tensor, stats: NormStats, max_state_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(normalised and padded [B, max_state_dim] float32, raw [B, state_dim] float32)``;
    normalised in float64 from the states as given (float64 stays float64)."""
    raw = torch.as_tensor(np.stack([np.asarray(s, dtype=np.float64) for s in states]))
    if raw.shape[-1] > max_state_dim:
        raise ValueError(f"state has {raw.shape[-1]} dims, the model takes at most {max_state_dim}")
    normed = stats.normalize(raw, "state")
    return F.pad(normed, (0, max_state_dim - normed.shape[-1])), raw.to(torch.float32)


def preprocess(
    inputs: Sequence[PolicyInput],
    *,
    cameras: Sequence[str | CameraSlot],
    image_size: int,
    tokenizer: PromptTokenizer,
    max_token_len: int,
    stats: NormStats,
    max_state_dim: int,
    device: torch.device | str = "cpu",
    resize: ResizeMethod = "torch",
    prompt_format: PromptFormat = "openpi",
) -> PolicyBatch:
    if not inputs:
        raise ValueError("preprocess needs at least one input")
    images, image_masks = preprocess_images(inputs, cameras, image_size, resize, device)
    tokens, token_masks = tokenize_prompts(
        tokenizer, [inp.prompt for inp in inputs], max_token_len, prompt_format
    )
    state, raw_state = preprocess_state([inp.state for inp in inputs], stats, max_state_dim)
    return PolicyBatch(
        images=images,
        image_masks=image_masks,
        tokens=tokens,
        token_masks=token_masks,
        state=state,
        raw_state=raw_state,
        cameras_present=tuple(bool(x) for x in image_masks.any(dim=0)),
    ).to(device)
