"""Boxes of binary masks, box areas and the XYXY -> XYWH conversion."""

from __future__ import annotations

import torch


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``NxHxW`` bool masks -> ``Nx4`` int64 XYXY boxes with inclusive ends (``x1`` is the last
    column holding a pixel); an empty mask gets ``[0, 0, 0, 0]``."""
    n, height, width = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64, device=masks.device)
    rows = masks.any(dim=2)  # N x H
    cols = masks.any(dim=1)  # N x W
    top, bottom = _first_last(rows, height)
    left, right = _first_last(cols, width)
    boxes = torch.stack([left, top, right, bottom], dim=1)
    empty = ~cols.any(dim=1)
    return boxes.masked_fill(empty[:, None], 0)


def _first_last(occupied: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last True index along the last axis of an ``NxL`` bool tensor."""
    as_int = occupied.to(torch.uint8)
    first = as_int.argmax(dim=1)
    last = (length - 1) - as_int.flip(1).argmax(dim=1)
    return first, last


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """``Nx4`` XYXY -> ``N`` areas ``(x1 - x0) * (y1 - y0)`` (no +1), in the boxes' dtype."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def xyxy_to_xywh(box: list[int]) -> list[int]:
    """``[x0, y0, x1, y1]`` -> ``[x0, y0, x1 - x0, y1 - y0]``."""
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]
