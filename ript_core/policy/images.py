"""Camera images -> model pixels, in plain torch (no torchvision).

openpi's convention (``openpi_client.image_tools.resize_with_pad``): keep the
aspect ratio, resize bilinearly so the longer side fits, centre the result
on a black canvas, stay in uint8; the model then maps ``x/255*2-1``. So
padding is -1 in model space (black), not 0 (mid-grey, what transformers'
``PI0ImageProcessor`` produces) and a non-square image is never stretched.

The resampler is ``F.interpolate(bilinear, antialias=True)`` rounded to
uint8, which follows PIL's antialiased bilinear filter (openpi's) to within
one grey level; an image already at the model size is passed through
untouched, as openpi does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """openpi's target shape: the longer side becomes ``size`` (``int()`` floors)."""
    ratio = max(width / size, height / size)
    return int(height / ratio), int(width / ratio)


def resize_with_pad(images: torch.Tensor | np.ndarray, size: int) -> torch.Tensor:
    """``[N, H, W, 3] uint8`` -> ``[N, 3, size, size] uint8``, aspect preserved,
    zero (black) padding centred."""
    x = torch.as_tensor(images)
    if x.dtype != torch.uint8:
        raise TypeError(f"images must be uint8, got {x.dtype}")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3], got {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2)
    n, _, height, width = x.shape
    if (height, width) == (size, size):
        return x.contiguous()
    new_h, new_w = resized_shape(height, width, size)
    resized = F.interpolate(
        x.to(torch.float32),
        size=(new_h, new_w),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    resized = resized.round().clamp_(0, 255).to(torch.uint8)
    out = torch.zeros(n, 3, size, size, dtype=torch.uint8, device=x.device)
    top = max(0, int((size - new_h) / 2))
    left = max(0, int((size - new_w) / 2))
    out[:, :, top : top + new_h, left : left + new_w] = resized
    return out


def to_model_range(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 -> ``[-1, 1]`` exactly as openpi (``x/255*2-1`` in float32), then cast."""
    return (images.to(torch.float32) / 255.0 * 2.0 - 1.0).to(dtype)
