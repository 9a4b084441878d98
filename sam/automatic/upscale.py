"""Low-res mask logits -> logits in crop pixels, bit for bit equal to ``Sam.postprocess_masks``, with
less work.

``Sam.postprocess_masks`` upsamples ``4g x 4g`` logits bilinearly to the ``S x S`` encoder frame,
crops the resized image (``h x w``) and upsamples again to the crop's size. Two shortcuts keep every
computed value identical:

- Only the low-res rows/columns that the ``h x w`` corner reads are upsampled. PyTorch's bilinear
  kernel (``align_corners=False``) reads output ``i`` from source ``(i + 0.5) / scale - 0.5``
  (clamped at 0) and its right neighbour (clamped at the last row); when the scale is passed as
  ``scale_factor`` instead of being derived from the sizes, cutting off source rows beyond the
  neighbours of the last needed output changes nothing. Used only when the scale is exact in
  float (``S / 4g`` = 4 in SAM).
- The second resize is skipped when the resized image already has the crop's size (the kernel
  then copies: source ``i`` is exactly ``i``).

``tests/sam/automatic/test_upscale.py`` checks the equality with ``torch.equal``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def upscale_logits(low_res: torch.Tensor, image_size: int, input_size: tuple[int, int],
                   original_size: tuple[int, int]) -> torch.Tensor:
    """``Kx4gx4g`` float32 low-res logits -> ``KxHxW`` float32 logits in ``original_size`` pixels.

    Args:
        image_size: ``S``, the encoder's input side.
        input_size: ``(h, w)``, the resized image inside the ``S x S`` frame (long side ``S``).
        original_size: ``(H, W)`` of the image (crop) the embedding was computed on.
    """
    x = low_res[:, None]
    in_h, in_w = input_size
    low = x.shape[-1]
    scale = image_size / low
    if x.shape[-2] == low and scale == int(scale) and (1.0 / scale) * image_size == low:
        rows = min(low, math.ceil(in_h / scale) + 2)
        cols = min(low, math.ceil(in_w / scale) + 2)
        x = F.interpolate(x[..., :rows, :cols], scale_factor=(scale, scale), mode="bilinear",
                          align_corners=False, recompute_scale_factor=False)
    else:
        x = F.interpolate(x, (image_size, image_size), mode="bilinear", align_corners=False)
    x = x[..., :in_h, :in_w]
    if (in_h, in_w) != tuple(original_size):
        x = F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)
    return x[:, 0]
