"""Column-wise storage of candidate masks while they are filtered (numpy)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class MaskRecords:
    """``N`` candidate masks, one row per mask.

    Attributes:
        rles: uncompressed RLEs (see :mod:`sam.automatic.rle`) in image pixels.
        boxes: ``Nx4`` int64 XYXY mask boxes, inclusive ends (crop pixels until uncropped).
        iou_predictions: ``N`` float32 predicted IoU.
        points: ``Nx2`` float64 ``(x, y)`` of the prompting point (crop pixels until uncropped).
        stability_scores: ``N`` float32.
        crop_boxes: ``Nx4`` int64 XYXY (exclusive ends) image-pixel box of the crop each mask came from.
    """

    rles: list[dict[str, Any]]
    boxes: np.ndarray
    iou_predictions: np.ndarray
    points: np.ndarray
    stability_scores: np.ndarray
    crop_boxes: np.ndarray

    @classmethod
    def empty(cls) -> MaskRecords:
        return cls(rles=[], boxes=np.zeros((0, 4), dtype=np.int64),
                   iou_predictions=np.zeros(0, dtype=np.float32),
                   points=np.zeros((0, 2), dtype=np.float64),
                   stability_scores=np.zeros(0, dtype=np.float32),
                   crop_boxes=np.zeros((0, 4), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.rles)

    def select(self, index: np.ndarray) -> MaskRecords:
        """Rows ``index`` (int64 indices, in that order, or an ``N`` bool mask)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        rows = index.tolist()
        return MaskRecords(rles=[self.rles[i] for i in rows], boxes=self.boxes[index],
                           iou_predictions=self.iou_predictions[index], points=self.points[index],
                           stability_scores=self.stability_scores[index], crop_boxes=self.crop_boxes[index])

    @classmethod
    def cat(cls, parts: Sequence[MaskRecords]) -> MaskRecords:
        """Rows of ``parts`` one after the other."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(rles=[rle for p in parts for rle in p.rles],
                   boxes=np.concatenate([p.boxes for p in parts]),
                   iou_predictions=np.concatenate([p.iou_predictions for p in parts]),
                   points=np.concatenate([p.points for p in parts]),
                   stability_scores=np.concatenate([p.stability_scores for p in parts]),
                   crop_boxes=np.concatenate([p.crop_boxes for p in parts]))
