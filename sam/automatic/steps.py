"""The automatic generator's steps around the mask decoder, in numpy (no torch).

Shared by :class:`sam.automatic.MaskGenerator`, which decodes and upscales with the in-process
model (torch), and the gateway's ``GenerateMasks`` (``server/generation.py``), which decodes with
Triton and upscales with :func:`sam.transforms.upscale_logits`. Per crop:

1. :func:`crop_points` and :func:`point_prompts`: the layer's grid in crop pixels, one prompt set
   (the point and SAM's padding point) per grid point, in the crop's resized frame;
2. the caller decodes a batch of prompts: ``B x 4`` predicted IoUs and ``B x 4`` low-res logits;
3. :func:`select_candidates`: the multimask outputs (tokens 1..3) that pass ``pred_iou_thresh``;
4. the caller upscales those logits to crop pixels (a few at a time, to bound memory);
5. :func:`filter_masks`: stability filter, binarisation, boxes, the crop-edge filter, RLE in image
   pixels;
6. :func:`finish_crop`: NMS within the crop, boxes and points moved to image pixels.

Then :func:`merge_crops` (NMS across crops, smaller crops win), :func:`clean_regions`
(``min_mask_region_area``) and :func:`to_annotations` (the SA-1B dicts). The NMS is a parameter: the
in-package generator passes :func:`~sam.automatic.generator.nms_reference_order` to reproduce the
reference's result order above 1000 boxes, the gateway the plain stable :func:`~sam.automatic.nms.nms`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam import transforms
from sam.automatic.boxes import box_area, masks_to_boxes, xyxy_to_xywh
from sam.automatic.crops import is_box_near_crop_edge, uncrop_boxes, uncrop_points
from sam.automatic.nms import nms
from sam.automatic.records import MaskRecords
from sam.automatic.regions import remove_small_regions
from sam.automatic.rle import masks_to_rles, rle_area, rle_to_coco, rle_to_mask
from sam.automatic.runs import ColumnRuns
from sam.automatic.stability import stability_score
from sam.prompts import LABEL_FOREGROUND, LABEL_PADDING

#: Multimask outputs per prompt (decoder tokens 1..3; token 0 is the single-mask output).
MULTIMASK_TOKENS = 3

NmsFn = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def crop_points(grid: np.ndarray, crop_size: tuple[int, int]) -> np.ndarray:
    """``Nx2`` grid fractions ``(x, y)`` in ``[0, 1]`` -> float64 ``(x, y)`` in the pixels of a crop
    of ``(h, w)`` (``x * w``, ``y * h``)."""
    return grid * np.array(crop_size)[None, ::-1]


def point_prompts(points: np.ndarray, crop_size: tuple[int, int], image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One single-point prompt set per point.

    Args:
        points: ``Bx2`` float64 ``(x, y)`` in crop pixels.
        crop_size: ``(h, w)`` of the crop the embedding was computed on.
        image_size: the encoder's input side ``S``.

    Returns:
        ``(coords, labels)``: ``Bx2x2`` float64 coordinates in the crop's resized frame (the point,
        then SAM's padding point at (0, 0)) and ``Bx2`` int32 labels (foreground, padding). The
        coordinates stay float64: the reference passes float64 and the prompt encoder normalises
        them before casting, so rounding first would change the last bit of some encodings.
    """
    b = points.shape[0]
    resized = transforms.scale_coords(points, crop_size, image_size)
    coords = np.concatenate([resized[:, None, :], np.zeros((b, 1, 2))], axis=1)
    labels = np.tile(np.array([[LABEL_FOREGROUND, LABEL_PADDING]], dtype=np.int32), (b, 1))
    return coords, labels


@dataclass(frozen=True)
class Candidates:
    """The multimask outputs of a batch of ``B`` prompts that passed the predicted-IoU filter.

    Attributes:
        index: ``K`` int64 indices into the ``B * 3`` multimask outputs, prompt-major
            (``prompt * 3 + token - 1``), ascending.
        flat_iou: ``B * 3`` float32 predicted IoUs of all multimask outputs, same order.
    """

    index: np.ndarray
    flat_iou: np.ndarray

    @property
    def prompt(self) -> np.ndarray:
        """``K`` prompt (row of the batch) of each candidate."""
        return self.index // MULTIMASK_TOKENS

    @property
    def token(self) -> np.ndarray:
        """``K`` decoder output token (1..3) of each candidate."""
        return self.index % MULTIMASK_TOKENS + 1


def select_candidates(iou_predictions: np.ndarray, pred_iou_thresh: float) -> Candidates:
    """Candidates of a batch from its ``Bx4`` float32 predicted IoUs (all tokens, token order):
    multimask outputs with IoU ``> pred_iou_thresh``, or all of them when the threshold is <= 0."""
    flat_iou = np.ascontiguousarray(np.asarray(iou_predictions, dtype=np.float32)[:, 1:]).reshape(-1)
    if pred_iou_thresh > 0.0:
        index = np.flatnonzero(flat_iou > pred_iou_thresh)
    else:
        index = np.arange(flat_iou.size)
    return Candidates(index.astype(np.int64), flat_iou)


def filter_masks(logits: np.ndarray, index: np.ndarray, candidates: Candidates, points: np.ndarray,
                 crop_box: Sequence[int], image_size: tuple[int, int], *, mask_threshold: float,
                 stability_score_thresh: float, stability_score_offset: float) -> MaskRecords:
    """Filters upscaled candidates and run-length encodes the survivors.

    Args:
        logits: ``Kxhxw`` float32 logits in crop pixels of the candidates ``index`` (a subset of
            ``candidates.index``, same order).
        points: ``Bx2`` float64 ``(x, y)`` crop pixels of the batch's prompts.
        crop_box: XYXY (exclusive end) image pixels of the crop; ``image_size`` ``(H, W)``.

    Returns:
        The survivors: stability score ``>= stability_score_thresh`` (when positive), box not cut
        by a crop edge inside the image; boxes and points in crop pixels, RLEs in image pixels.
    """
    stability = stability_score(logits, mask_threshold, stability_score_offset)
    if stability_score_thresh > 0.0:
        keep = stability >= stability_score_thresh
        logits, stability, index = logits[keep], stability[keep], index[keep]
    runs = ColumnRuns.from_masks(np.asarray(logits) > mask_threshold)
    boxes = runs.boxes()
    image_box = [0, 0, image_size[1], image_size[0]]
    inside = np.flatnonzero(~is_box_near_crop_edge(boxes, crop_box, image_box))
    if inside.size == 0:
        return MaskRecords.empty()
    rles = runs.rles(crop_box, image_size, which=inside.tolist())
    boxes, stability, index = boxes[inside], stability[inside], index[inside]
    return MaskRecords(
        rles=rles,
        boxes=boxes,
        iou_predictions=candidates.flat_iou[index],
        points=points[index // MULTIMASK_TOKENS],
        stability_scores=stability,
        crop_boxes=np.tile(np.asarray(crop_box, dtype=np.int64), (len(rles), 1)),
    )


def finish_crop(parts: Sequence[MaskRecords], crop_box: Sequence[int], box_nms_thresh: float,
                nms_fn: NmsFn = nms) -> MaskRecords:
    """A crop's masks: NMS by predicted IoU, then boxes and points moved to image pixels."""
    records = MaskRecords.cat(parts)
    records = records.select(nms_fn(records.boxes.astype(np.float32), records.iou_predictions, box_nms_thresh))
    records.boxes = uncrop_boxes(records.boxes, crop_box)
    records.points = uncrop_points(records.points, crop_box)
    return records


def merge_crops(records: MaskRecords, n_crops: int, crop_nms_thresh: float, nms_fn: NmsFn = nms) -> MaskRecords:
    """With several crops, NMS across them that prefers masks from smaller crops (score
    ``1 / crop area`` in float32)."""
    if n_crops <= 1 or not len(records):
        return records
    scores = np.float32(1) / box_area(records.crop_boxes).astype(np.float32)
    return records.select(nms_fn(records.boxes.astype(np.float32), scores, crop_nms_thresh))


def clean_regions(records: MaskRecords, min_area: float, nms_thresh: float, nms_fn: NmsFn = nms) -> MaskRecords:
    """Removes islands and fills holes below ``min_area`` pixels, then NMS (``nms_thresh``, i.e.
    ``max(box_nms_thresh, crop_nms_thresh)``) preferring masks that did not change (score 1 for
    unchanged, 0 for changed)."""
    if not len(records):
        return records
    new_rles: dict[int, dict[str, Any]] = {}
    boxes = []
    scores = []
    for i, rle in enumerate(records.rles):
        mask = rle_to_mask(rle)
        mask, filled = remove_small_regions(mask, min_area, "holes")
        mask, removed = remove_small_regions(mask, min_area, "islands")
        changed = filled or removed
        boxes.append(masks_to_boxes(mask[None])[0])
        scores.append(0.0 if changed else 1.0)
        if changed:
            new_rles[i] = masks_to_rles(mask[None])[0]
    new_boxes = np.stack(boxes)
    keep = nms_fn(new_boxes.astype(np.float32), np.array(scores, dtype=np.float32), nms_thresh)
    records.rles = list(records.rles)
    records.boxes = records.boxes.copy()
    for i in keep.tolist():
        if i in new_rles:
            records.rles[i] = new_rles[i]
            records.boxes[i] = new_boxes[i]
    return records.select(keep)


def to_annotations(records: MaskRecords, output_mode: str) -> list[dict[str, Any]]:
    """SA-1B style dicts (see :meth:`sam.automatic.MaskGenerator.generate`), in the records' order."""
    boxes = records.boxes.tolist()
    crop_boxes = records.crop_boxes.tolist()
    points = records.points.tolist()
    ious = records.iou_predictions.tolist()
    stabilities = records.stability_scores.tolist()
    out = []
    for i, rle in enumerate(records.rles):
        if output_mode == "binary_mask":
            segmentation: Any = rle_to_mask(rle)
        elif output_mode == "coco_rle":
            segmentation = rle_to_coco(rle)
        else:
            segmentation = rle
        out.append({
            "segmentation": segmentation,
            "area": rle_area(rle),
            "bbox": xyxy_to_xywh(boxes[i]),
            "predicted_iou": ious[i],
            "point_coords": [points[i]],
            "stability_score": stabilities[i],
            "crop_box": xyxy_to_xywh(crop_boxes[i]),
        })
    return out
