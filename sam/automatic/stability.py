"""Stability score of mask logits: how little the mask changes when its threshold moves."""

from __future__ import annotations

import numpy as np
import torch


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks ``logits > mask_threshold + offset`` and ``logits > mask_threshold - offset``.

    The first mask lies inside the second, so the IoU is ``count(> hi) / count(> lo)``.

    Args:
        logits: ``...xHxW`` float mask logits (upscaled to the crop's pixels).

    Returns:
        ``...`` float32: ``float32(count_hi) / float32(count_lo)``; NaN where ``count_lo`` is 0 (the
        reference generator's value; a NaN score never passes a positive threshold).
    """
    high = _count(logits > (mask_threshold + offset))
    low = _count(logits > (mask_threshold - offset))
    return high / low


def _count(masks: torch.Tensor) -> torch.Tensor:
    """True pixels per ``HxW`` mask -> int32 (numpy's count_nonzero is several times faster than a
    torch sum over a bool tensor)."""
    flat = masks.reshape(-1, masks.shape[-2] * masks.shape[-1]).numpy()
    counts = [np.count_nonzero(row) for row in flat]
    return torch.tensor(counts, dtype=torch.int32).reshape(masks.shape[:-2])
