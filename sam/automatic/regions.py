"""Removal of small disconnected regions and small holes from binary masks (OpenCV)."""

from __future__ import annotations

import cv2
import numpy as np


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Removes 8-connected islands (``mode="islands"``) or fills holes (``mode="holes"``) smaller than
    ``area_thresh`` pixels.

    A hole is a connected component of the background, the outer background included (so an image
    smaller than ``area_thresh`` gets filled entirely). When every island is small, the largest is
    kept.

    Args:
        mask: ``HxW`` bool.

    Returns:
        ``(mask, changed)``: the ``HxW`` bool result and whether anything was removed or filled.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    fill_holes = mode == "holes"
    working = (mask ^ fill_holes).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]  # label 0 is the complement of `working`
    small = [i + 1 for i, size in enumerate(sizes) if size < area_thresh]
    if not small:
        return mask, False
    if fill_holes:
        labels_in_mask = [0] + small  # the mask itself plus the small background components
    else:
        removed = set(small)
        labels_in_mask = [i for i in range(1, n_labels) if i not in removed]
        if not labels_in_mask:
            labels_in_mask = [int(np.argmax(sizes)) + 1]
    return np.isin(labels, labels_in_mask), True
