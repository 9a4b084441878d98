"""The automatic generator's parameters: reference defaults and range checks (no torch).

Shared by :class:`sam.automatic.MaskGenerator` (which raises the :class:`ParameterError`, a
``ValueError``) and the gateway's ``GenerateMasks`` (which reports it as ``INVALID_ARGUMENT`` on the
request field of the same name).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

#: The reference generator's defaults (``point_grids`` and ``output_mode`` aside).
DEFAULTS: dict[str, Any] = {
    "points_per_side": 32,
    "points_per_batch": 64,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95,
    "stability_score_offset": 1.0,
    "box_nms_thresh": 0.7,
    "crop_n_layers": 0,
    "crop_nms_thresh": 0.7,
    "crop_overlap_ratio": 512 / 1500,
    "crop_n_points_downscale_factor": 1,
    "min_mask_region_area": 0,
}


class ParameterError(ValueError):
    """A parameter is out of range; ``name`` is the parameter, the message says what to pass."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def check_parameters(*, points_per_batch: Any, pred_iou_thresh: Any, stability_score_thresh: Any,
                     stability_score_offset: Any, box_nms_thresh: Any, crop_n_layers: Any, crop_nms_thresh: Any,
                     crop_overlap_ratio: Any, crop_n_points_downscale_factor: Any,
                     min_mask_region_area: Any) -> None:
    """Raises :class:`ParameterError` for the first parameter out of its range (see
    :class:`~sam.automatic.MaskGenerator` for the ranges)."""
    check_int("points_per_batch", points_per_batch, 1)
    check_int("crop_n_layers", crop_n_layers, 0)
    check_int("crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1)
    check_real("pred_iou_thresh", pred_iou_thresh)
    check_real("stability_score_thresh", stability_score_thresh)
    check_real("stability_score_offset", stability_score_offset, low=0.0)
    check_real("box_nms_thresh", box_nms_thresh, low=0.0, high=1.0)
    check_real("crop_nms_thresh", crop_nms_thresh, low=0.0, high=1.0)
    check_real("crop_overlap_ratio", crop_overlap_ratio, low=0.0, high=1.0, high_open=True)
    check_real("min_mask_region_area", min_mask_region_area, low=0.0)


def check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ParameterError(name, f"{name} must be an integer >= {low}, got {value!r}")


def check_real(name: str, value: Any, low: float | None = None, high: float | None = None,
               high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ParameterError(name, f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if low is not None and value < low:
        raise ParameterError(name, f"{name} must be >= {low}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        bound = f"< {high}" if high_open else f"<= {high}"
        raise ParameterError(name, f"{name} must be {bound}, got {value!r}")


def check_point_grids(point_grids: Sequence[np.ndarray], crop_n_layers: int) -> list[np.ndarray]:
    """Explicit grids as float64 ``Nx2`` arrays, one per crop layer (at least ``crop_n_layers + 1``)."""
    grids = list(point_grids)
    if len(grids) < crop_n_layers + 1:
        raise ParameterError("point_grids", f"point_grids needs one grid per crop layer: {crop_n_layers + 1} for "
                                            f"crop_n_layers={crop_n_layers}, got {len(grids)}")
    out = []
    for i, grid in enumerate(grids):
        array = np.asarray(grid, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
            raise ParameterError("point_grids", f"point_grids[{i}] must be a non-empty Nx2 array of (x, y), "
                                                f"got shape {array.shape}")
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ParameterError("point_grids", f"point_grids[{i}] must hold (x, y) fractions of the crop in [0, 1]")
        out.append(array)
    return out
