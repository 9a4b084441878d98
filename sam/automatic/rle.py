"""Run-length encoding of binary masks, compatible with pycocotools.

An *uncompressed RLE* is ``{"size": [H, W], "counts": [c0, c1, ...]}``: run lengths over the mask
read in column-major (Fortran) order, starting with a run of zeros (``c0`` may be 0). A *COCO RLE*
is the same with ``counts`` compressed to pycocotools' ASCII string.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sam.automatic.runs import ColumnRuns


def masks_to_rles(masks: np.ndarray) -> list[dict[str, Any]]:
    """``NxHxW`` bool masks -> ``N`` uncompressed RLEs (counts as Python ints)."""
    return ColumnRuns.from_masks(masks).rles()


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE -> ``HxW`` bool mask (C-contiguous)."""
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != height * width:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {height}*{width} pixels")
    values = (np.arange(counts.size) % 2).astype(bool)
    return np.ascontiguousarray(np.repeat(values, counts).reshape(width, height).T)


def rle_area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of an uncompressed RLE."""
    return int(sum(rle["counts"][1::2]))


def rle_to_coco(rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> COCO RLE ``{"size": [H, W], "counts": str}`` (pycocotools' compressed form,
    decoded to text so it serialises as JSON)."""
    height, width = rle["size"]
    coco = mask_utils.frPyObjects(rle, height, width)
    return {"size": [int(v) for v in coco["size"]], "counts": coco["counts"].decode("utf-8")}
