"""Boxes of binary masks, box areas and the XYXY -> XYWH conversion (numpy)."""

from __future__ import annotations

import numpy as np


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """``NxHxW`` bool masks -> ``Nx4`` int64 XYXY boxes with inclusive ends (``x1`` is the last
    column holding a pixel); an empty mask gets ``[0, 0, 0, 0]``."""
    masks = np.asarray(masks, dtype=bool)
    n, height, width = masks.shape
    if n == 0:
        return np.zeros((0, 4), dtype=np.int64)
    rows = masks.any(axis=2)  # N x H
    cols = masks.any(axis=1)  # N x W
    boxes = np.stack([
        cols.argmax(axis=1),
        rows.argmax(axis=1),
        (width - 1) - cols[:, ::-1].argmax(axis=1),
        (height - 1) - rows[:, ::-1].argmax(axis=1),
    ], axis=1).astype(np.int64)
    boxes[~cols.any(axis=1)] = 0
    return boxes


def box_area(boxes: np.ndarray) -> np.ndarray:
    """``Nx4`` XYXY -> ``N`` areas ``(x1 - x0) * (y1 - y0)`` (no +1), in the boxes' dtype."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def xyxy_to_xywh(box: list[int]) -> list[int]:
    """``[x0, y0, x1, y1]`` -> ``[x0, y0, x1 - x0, y1 - y0]``."""
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]
