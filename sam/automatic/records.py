"""Column-wise storage of candidate masks while they are filtered."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


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
    boxes: torch.Tensor
    iou_predictions: torch.Tensor
    points: torch.Tensor
    stability_scores: torch.Tensor
    crop_boxes: torch.Tensor

    @classmethod
    def empty(cls) -> MaskRecords:
        return cls(rles=[], boxes=torch.zeros((0, 4), dtype=torch.int64),
                   iou_predictions=torch.zeros(0, dtype=torch.float32),
                   points=torch.zeros((0, 2), dtype=torch.float64),
                   stability_scores=torch.zeros(0, dtype=torch.float32),
                   crop_boxes=torch.zeros((0, 4), dtype=torch.int64))

    def __len__(self) -> int:
        return len(self.rles)

    def select(self, index: torch.Tensor) -> MaskRecords:
        """Rows ``index`` (int64 indices, in that order, or an ``N`` bool mask)."""
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
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
                   boxes=torch.cat([p.boxes for p in parts]),
                   iou_predictions=torch.cat([p.iou_predictions for p in parts]),
                   points=torch.cat([p.points for p in parts]),
                   stability_scores=torch.cat([p.stability_scores for p in parts]),
                   crop_boxes=torch.cat([p.crop_boxes for p in parts]))
