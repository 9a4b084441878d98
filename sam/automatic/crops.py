"""Crop boxes of the crop layers, and moving boxes, points and masks between a crop and the image.

Frames: *image* pixels of the original image (``H x W``); *crop* pixels of one crop, whose origin is
the crop box's top-left corner. Crop boxes are XYXY ``[x0, y0, x1, y1]`` in image pixels with
exclusive ``x1, y1`` (``image[y0:y1, x0:x1]``); mask boxes are XYXY with inclusive ``x1, y1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: A mask box closer than this (pixels) to a crop edge that is not an image edge is cut off by the crop.
CROP_EDGE_TOLERANCE_PX = 20.0


def _crop_length(image_length: int, n_crops: int, overlap: int) -> int:
    return int(math.ceil((overlap * (n_crops - 1) + image_length) / n_crops))


def generate_crop_boxes(image_size: tuple[int, int], n_layers: int,
                        overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes of layers ``0..n_layers`` for an image of ``(H, W)`` pixels.

    Layer 0 is the whole image. Layer ``i >= 1`` tiles the image with ``2**i x 2**i`` crops that overlap
    by ``int(overlap_ratio * min(H, W) * 2 / 2**i)`` pixels; a crop is
    ``ceil((W + overlap * (n - 1)) / n)`` wide (likewise high) and crop ``j`` starts at
    ``j * (width - overlap)``, clipped to the image. Crops are listed column by column (``x0``
    outer, ``y0`` inner).

    Returns:
        ``(boxes, layers)``: XYXY image-pixel boxes (ints, exclusive end) and each box's layer.
    """
    height, width = image_size
    short_side = min(height, width)
    boxes = [[0, 0, width, height]]
    layers = [0]
    for layer in range(1, n_layers + 1):
        n = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / n))
        crop_w = _crop_length(width, n, overlap)
        crop_h = _crop_length(height, n, overlap)
        x_starts = [int((crop_w - overlap) * i) for i in range(n)]
        y_starts = [int((crop_h - overlap) * i) for i in range(n)]
        for x0 in x_starts:
            for y0 in y_starts:
                boxes.append([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)])
                layers.append(layer)
    return boxes, layers


def uncrop_boxes(boxes: np.ndarray, crop_box: Sequence[int]) -> np.ndarray:
    """``Nx4`` XYXY boxes in crop pixels -> image pixels (same dtype)."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return boxes + np.array([[x0, y0, x0, y0]], dtype=boxes.dtype)


def uncrop_points(points: np.ndarray, crop_box: Sequence[int]) -> np.ndarray:
    """``Nx2`` ``(x, y)`` in crop pixels -> image pixels (same dtype)."""
    x0, y0 = int(crop_box[0]), int(crop_box[1])
    return points + np.array([[x0, y0]], dtype=points.dtype)


def uncrop_masks(masks: np.ndarray, crop_box: Sequence[int], image_size: tuple[int, int]) -> np.ndarray:
    """``Nxhxw`` masks of a crop -> ``NxHxW`` masks of the image (zero outside the crop)."""
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    height, width = image_size
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return masks
    return np.pad(masks, ((0, 0), (y0, height - y1), (x0, width - x1)))


def is_box_near_crop_edge(boxes: np.ndarray, crop_box: Sequence[int], image_box: Sequence[int],
                          tolerance: float = CROP_EDGE_TOLERANCE_PX) -> np.ndarray:
    """``N`` bool: the ``Nx4`` XYXY box (crop pixels) lies within ``tolerance`` px of an edge of
    ``crop_box`` that is not also an edge of ``image_box`` (both XYXY image pixels), i.e. the mask
    probably continues outside the crop. Compared in float32, as the reference does."""
    crop = np.asarray(crop_box, dtype=np.float32)[None, :]
    image = np.asarray(image_box, dtype=np.float32)[None, :]
    boxes = uncrop_boxes(np.asarray(boxes), crop_box).astype(np.float32)
    near_crop = np.abs(boxes - crop) <= np.float32(tolerance)
    near_image = np.abs(boxes - image) <= np.float32(tolerance)
    return np.any(near_crop & ~near_image, axis=1)
