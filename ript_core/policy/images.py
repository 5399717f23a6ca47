"""Camera images -> model pixels, in plain torch (no torchvision).

openpi's convention (``openpi_client.image_tools.resize_with_pad``): keep the
aspect ratio, resize bilinearly so the longer side fits, centre the result
on a black canvas, stay in uint8; the model then maps ``x/255*2-1``. So
padding is -1 in model space (black), not 0 (mid-grey, what transformers'
``PI0ImageProcessor`` produces) and a non-square image is never stretched.

Two resamplers, chosen by the checkpoint's pipeline (``Pipeline.resize``):

- ``"pil"``: Pillow's ``Image.resize(BILINEAR)`` on each uint8 image, which is
  what openpi's client does (its downscale filter widens with the scale
  factor, i.e. antialiases). Bit-exact with openpi; one image at a time.
- ``"torch"``: ``F.interpolate(bilinear, antialias=True)`` on the whole batch,
  rounded to uint8. Fast (and on the GPU if the images are); not bit-exact
  with Pillow (docs/policy.md has the measured difference).
- ``"torch_plain"``: ``F.interpolate(bilinear)`` *without* antialiasing,
  rounded to uint8: the resampler of lerobot's and openpi's PyTorch ports
  (they keep floats, so ours is within half a grey level of theirs).

An image already at the model size is passed through untouched, as openpi does.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

ResizeMethod = Literal["pil", "torch", "torch_plain"]
RESIZE_METHODS = ("pil", "torch", "torch_plain")


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """openpi's target shape: the longer side becomes ``size`` (``int()`` floors)."""
    ratio = max(width / size, height / size)
    return int(height / ratio), int(width / ratio)


def _pil_resize(images: np.ndarray, new_h: int, new_w: int) -> torch.Tensor:
    """``[N, H, W, 3] uint8`` -> ``[N, 3, new_h, new_w] uint8`` with Pillow's bilinear."""
    from PIL import Image

    out = np.stack(
        [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(im)).resize((new_w, new_h), Image.BILINEAR)
            )
            for im in images
        ]
    )
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def resize_with_pad(
    images: torch.Tensor | np.ndarray, size: int, method: ResizeMethod = "torch"
) -> torch.Tensor:
    """``[N, H, W, 3] uint8`` -> ``[N, 3, size, size] uint8``, aspect preserved,
    zero (black) padding centred; ``method`` as in the module docstring."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize method must be one of {RESIZE_METHODS}, got {method!r}")
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {x.dtype}")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3], got {tuple(x.shape)}")
    n, height, width, _ = x.shape
    if (height, width) == (size, size):
        return x.permute(0, 3, 1, 2).contiguous()
    new_h, new_w = resized_shape(height, width, size)
    top = max(0, int((size - new_h) / 2))
    left = max(0, int((size - new_w) / 2))
    out = torch.zeros(n, 3, size, size, dtype=torch.uint8, device=x.device)
    if method == "pil":
        resized = _pil_resize(x.cpu().numpy(), new_h, new_w).to(x.device)
        out[:, :, top : top + new_h, left : left + new_w] = resized
        return out
    x = x.permute(0, 3, 1, 2)
    resized = F.interpolate(
        x.to(torch.float32),
        size=(new_h, new_w),
        mode="bilinear",
        align_corners=False,
        antialias=method == "torch",
    )
    resized = resized.round().clamp_(0, 255).to(torch.uint8)
    out[:, :, top : top + new_h, left : left + new_w] = resized
    return out


def to_model_range(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 -> ``[-1, 1]`` exactly as openpi (``x/255*2-1`` in float32), then cast."""
    return (images.to(torch.float32) / 255.0 * 2.0 - 1.0).to(dtype)
