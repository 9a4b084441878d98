"""Segmentation and interactive-segmentation metrics (numpy only).

- :func:`iou`: intersection over union of two boolean masks (1.0 when both are empty).
- :func:`mean_iou`: the mean of per-object IoUs.
- :func:`number_of_clicks`: NoC@t, the number of clicks until IoU >= t, with ``max_clicks`` (20)
  counted for a sequence that never gets there; :func:`mean_noc` averages it over objects.
- :func:`spearman`: Spearman's rank correlation (Pearson on ranks, ties get their average rank).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_CLICKS = 20


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two boolean masks of one shape (any dimensions); 1.0 if both are empty."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"masks must have the same shape, got {pred.shape} and {gt.shape}")
    union = int(np.count_nonzero(pred | gt))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(pred & gt)) / union


def mean_iou(ious: Sequence[float] | np.ndarray) -> float:
    """Mean of per-object IoUs; raises ValueError for an empty list."""
    values = np.asarray(ious, dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean_iou needs at least one IoU")
    return float(values.mean())


def number_of_clicks(ious_per_click: Sequence[float] | np.ndarray, threshold: float,
                     max_clicks: int = MAX_CLICKS) -> int:
    """NoC for one object: the 1-based index of the first click whose IoU reaches ``threshold``
    (``ious_per_click[k]`` is the IoU after ``k + 1`` clicks), looking at most at ``max_clicks``
    clicks; ``max_clicks`` if none does."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], e.g. 0.85 or 0.9; got {threshold}")
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be >= 1, got {max_clicks}")
    values = np.asarray(ious_per_click, dtype=np.float64)[:max_clicks]
    hits = np.flatnonzero(values >= threshold)
    return int(hits[0]) + 1 if hits.size else max_clicks


def mean_noc(curves: Sequence[Sequence[float]] | np.ndarray, threshold: float,
             max_clicks: int = MAX_CLICKS) -> float:
    """Mean NoC@threshold over objects, one IoU-per-click curve each."""
    if len(curves) == 0:
        raise ValueError("mean_noc needs at least one click curve")
    return float(np.mean([number_of_clicks(c, threshold, max_clicks) for c in curves]))


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (ascending); tied values share the average of their ranks."""
    x = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    ranks = np.empty(x.size, dtype=np.float64)
    start = 0
    while start < x.size:
        stop = start + 1
        while stop < x.size and sorted_x[stop] == sorted_x[start]:
            stop += 1
        ranks[order[start:stop]] = (start + stop + 1) / 2.0  # mean of ranks start+1 .. stop
        start = stop
    return ranks


def spearman(predicted: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation of two equal-length sequences (ties averaged). NaN when either
    sequence is constant (the correlation is undefined)."""
    a, b = np.asarray(predicted, dtype=np.float64).ravel(), np.asarray(actual, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"sequences must have the same length, got {a.size} and {b.size}")
    if a.size < 2:
        raise ValueError("spearman needs at least two pairs")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("spearman got NaN or infinite values")
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    if denom == 0.0:
        return float("nan")
    return float((ra * rb).sum() / denom)
