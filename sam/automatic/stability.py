"""Stability score of mask logits: how little the mask changes when its threshold moves (numpy)."""

from __future__ import annotations

import numpy as np


def stability_score(logits: np.ndarray, mask_threshold: float, offset: float) -> np.ndarray:
    """IoU between the masks ``logits > mask_threshold + offset`` and ``logits > mask_threshold - offset``.

    The first mask lies inside the second, so the IoU is ``count(> hi) / count(> lo)``.

    Args:
        logits: ``...xHxW`` float32 mask logits (upscaled to the crop's pixels); anything
            ``np.asarray`` takes, a CPU torch tensor included.

    Returns:
        ``...`` float32: ``float32(count_hi) / float32(count_lo)``; NaN where ``count_lo`` is 0 (the
        reference generator's value; a NaN score never passes a positive threshold).
    """
    logits = np.asarray(logits)
    high = _count(logits > (mask_threshold + offset))
    low = _count(logits > (mask_threshold - offset))
    with np.errstate(divide="ignore", invalid="ignore"):
        return high / low


def _count(masks: np.ndarray) -> np.ndarray:
    """True pixels per ``HxW`` mask -> float32 (exact below 2**24 pixels; ``count_nonzero`` per row
    is several times faster than a sum over a bool array)."""
    flat = masks.reshape(-1, masks.shape[-2] * masks.shape[-1])
    counts = [np.count_nonzero(row) for row in flat]
    return np.array(counts, dtype=np.float32).reshape(masks.shape[:-2])
