"""Greedy non-maximum suppression of XYXY boxes (numpy; no torchvision).

The reference generator calls torchvision's ``batched_nms`` with one category. That function keeps
the boxes of a greedy NMS whose order is a *stable* descending sort of the scores, and its IoU is
``inter / (area_i + area_j - inter)`` in float32 with areas ``(x1 - x0) * (y1 - y0)`` (no +1).
Above 1000 boxes on CPU it switches to a per-category implementation whose result order is an
*unstable* descending sort of the kept boxes' scores (taken in index order): equal scores then come
out in the order ``torch.sort`` happens to leave them. :func:`nms` is the greedy algorithm;
:func:`sam.automatic.generator.nms_reference_order` additionally reproduces that switch (it takes
torch's own unstable sort), so that the in-package generator's output order matches the
reference's; the gateway uses :func:`nms`.
"""

from __future__ import annotations

import numpy as np

#: torchvision's ``batched_nms`` on CPU takes its per-category path above this many boxes.
REFERENCE_VANILLA_MIN_BOXES = 1001

_BLOCK = 1024


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (``Nx4`` XYXY float32) with every box in ``b`` (``Mx4``) -> ``NxM``.

    Same float32 arithmetic as torchvision's CPU kernel; two zero-area boxes give NaN (0/0), which is
    never above a threshold.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    zero = np.float32(0)
    w = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), zero)
    h = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), zero)
    inter = w * h
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: visit boxes by descending score (stable: ties keep index order), keep a box unless
    its IoU with an already kept box is above ``iou_threshold``.

    Args:
        boxes: ``Nx4`` XYXY (any real dtype; compared in float32).
        scores: ``N`` scores.

    Returns:
        int64 indices of the kept boxes, highest score first.
    """
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be Nx4 XYXY, got shape {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable").astype(np.int64)
    ordered = boxes[order].astype(np.float32)
    suppressed = np.zeros(n, dtype=bool)
    kept: list[int] = []
    # Blocks of rows: the IoU of a block against all later boxes, then the sequential greedy pass.
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        # torchvision compares the float32 IoU with the threshold as a double: so do we.
        over = pairwise_iou(ordered[start:stop], ordered[start:]).astype(np.float64) > iou_threshold
        for row in range(stop - start):
            i = start + row
            if suppressed[i]:
                continue
            kept.append(i)
            suppressed[start:] |= over[row]
    return order[np.array(kept, dtype=np.int64)]
