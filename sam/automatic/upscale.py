"""Low-res mask logits -> logits in crop pixels, bit for bit equal to what ``Sam.postprocess_masks``
gives the reference generator, with less work.

The reference generator upscales every point's ``B x 3`` multimask logits with
``Sam.postprocess_masks``: bilinear to the ``S x S`` encoder frame, crop to the resized image
(``h x w``), bilinear to the crop's size. :func:`upscale_logits` upscales only the masks it is
given, and keeps every value identical:

- Masks go through ``F.interpolate`` in groups of 3 channels, the reference's layout. PyTorch's CPU
  kernel does not round the same way for every channel count (with one thread, 1-, 2- and 4-channel
  inputs differ from 3-channel ones in the last bit; 1-channel inputs also take the channels-last
  kernel); for 3 channels the result does not depend on how many images are in the batch.
- Only the low-res rows/columns that the ``h x w`` corner reads are upsampled. The kernel
  (``align_corners=False``) reads output ``i`` from source ``(i + 0.5) / scale - 0.5`` (clamped at
  0) and its right neighbour (clamped at the last row); when the scale is passed as ``scale_factor``
  instead of being derived from the sizes, cutting off source rows beyond the neighbours of the last
  needed output changes nothing. Used only when the scale is exact in float (``S / 4g`` = 4 in SAM).
- The second resize is skipped when the resized image already has the crop's size (the kernel then
  copies: source ``i`` is exactly ``i``).

``tests/sam/automatic/test_decoding_upscale.py`` checks the equality with ``torch.equal``, with one
and with two threads.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.nn import functional as F

#: Masks per ``F.interpolate`` channel group: the reference's 3 multimask outputs per point.
GROUP = 3


def in_groups_of_three(fn: Callable[[torch.Tensor], torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    """Applies ``fn`` (``Nx3xhxw`` -> ``Nx3xHxW``) to ``Kxhxw`` masks laid out 3 per row (the last
    row padded with copies of the last mask) -> ``KxHxW``."""
    k = masks.shape[0]
    if k == 0:
        return fn(masks.new_zeros((0, GROUP) + tuple(masks.shape[1:])))[:, 0]
    rows = -(-k // GROUP)
    padding = rows * GROUP - k
    if padding:
        masks = torch.cat([masks, masks[-1:].expand(padding, -1, -1)])
    out = fn(masks.reshape(rows, GROUP, masks.shape[1], masks.shape[2]))
    return out.reshape(rows * GROUP, out.shape[2], out.shape[3])[:k]


def upscale_logits(low_res: torch.Tensor, image_size: int, input_size: tuple[int, int],
                   original_size: tuple[int, int]) -> torch.Tensor:
    """``Kx4gx4g`` float32 low-res logits -> ``KxHxW`` float32 logits in ``original_size`` pixels.

    Args:
        image_size: ``S``, the encoder's input side.
        input_size: ``(h, w)``, the resized image inside the ``S x S`` frame (long side ``S``).
        original_size: ``(H, W)`` of the image (crop) the embedding was computed on.
    """
    return in_groups_of_three(lambda x: _upscale(x, image_size, input_size, original_size), low_res)


def _upscale(x: torch.Tensor, image_size: int, input_size: tuple[int, int],
             original_size: tuple[int, int]) -> torch.Tensor:
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
    return x
