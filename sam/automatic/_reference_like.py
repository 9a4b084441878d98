"""A deliberately plain implementation of the automatic generator: the test oracle and the benchmark
baseline for :class:`~sam.automatic.MaskGenerator`.

It follows the reference generator's steps literally: ``Sam.decode`` on the whole point batch, every
multimask output upscaled to crop pixels through ``Sam.postprocess_masks``, then the IoU filter,
stability, binarisation and boxes on the batch, RLE by scanning each mask's column-major changes,
NMS by a per-box loop. It shares only the grid, crop-box and small-region helpers with the fast path
(those have hand-computed tests); everything whose speed or exactness is in question is written
again here. Not for production use.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from sam import transforms
from sam.automatic.crops import generate_crop_boxes
from sam.automatic.grid import build_layer_point_grids
from sam.automatic.regions import remove_small_regions
from sam.modeling.sam import Sam
from sam.predictor import Predictor


def _plain_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """torchvision ``batched_nms`` semantics (one category), one kept box at a time."""
    boxes = boxes.float()
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    removed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in order:
        if removed[i]:
            continue
        keep.append(i)
        xx0 = torch.maximum(boxes[i, 0], boxes[:, 0])
        yy0 = torch.maximum(boxes[i, 1], boxes[:, 1])
        xx1 = torch.minimum(boxes[i, 2], boxes[:, 2])
        yy1 = torch.minimum(boxes[i, 3], boxes[:, 3])
        inter = (xx1 - xx0).clamp(min=0) * (yy1 - yy0).clamp(min=0)
        iou = inter / (areas[i] + areas - inter)
        removed |= iou.double() > threshold
    kept = torch.tensor(keep, dtype=torch.int64)
    if boxes.shape[0] > 1000:  # torchvision's per-category path re-sorts, not stably
        kept = torch.sort(kept).values
        kept = kept[scores[kept].sort(descending=True)[1]]
    return kept


def _boxes(masks: torch.Tensor) -> torch.Tensor:
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.int64)
    h, w = masks.shape[-2:]
    rows, cols = masks.any(dim=-1), masks.any(dim=-2)
    y_idx, x_idx = torch.arange(h), torch.arange(w)
    bottom = (rows * y_idx).max(dim=-1).values
    top = torch.where(rows, y_idx, h).min(dim=-1).values
    right = (cols * x_idx).max(dim=-1).values
    left = torch.where(cols, x_idx, w).min(dim=-1).values
    out = torch.stack([left, top, right, bottom], dim=-1)
    empty = (right < left) | (bottom < top)
    return out * (~empty)[:, None]


def _rle(mask: torch.Tensor) -> dict[str, Any]:
    h, w = mask.shape
    flat = mask.t().flatten()
    changes = torch.nonzero(flat[1:] != flat[:-1]).flatten() + 1
    edges = torch.cat([torch.tensor([0]), changes, torch.tensor([h * w])])
    counts = (edges[1:] - edges[:-1]).tolist()
    if bool(flat[0]):
        counts = [0] + counts
    return {"size": [h, w], "counts": counts}


def _decode_rle(rle: dict[str, Any]) -> np.ndarray:
    h, w = rle["size"]
    flat = np.zeros(h * w, dtype=bool)
    position, value = 0, False
    for count in rle["counts"]:
        flat[position:position + count] = value
        position += count
        value = not value
    return flat.reshape(w, h).T


class ReferenceLikeGenerator:
    """Same constructor and :meth:`generate` as :class:`~sam.automatic.MaskGenerator` (no validation)."""

    def __init__(self, model: Sam, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: list[np.ndarray] | None = None,
                 min_mask_region_area: int = 0, output_mode: str = "binary_mask") -> None:
        self.model = model
        self.predictor = Predictor(model)
        if point_grids is None:
            assert points_per_side is not None
            point_grids = build_layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
        self.point_grids = point_grids
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode

    @torch.inference_mode()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        h, w = image.shape[:2]
        crop_boxes, layers = generate_crop_boxes((h, w), self.crop_n_layers, self.crop_overlap_ratio)
        rows: list[dict[str, Any]] = []
        for crop_box, layer in zip(crop_boxes, layers, strict=True):
            rows += self._crop(image, crop_box, layer)
        if len(crop_boxes) > 1 and rows:
            crops = torch.tensor([r["crop_box"] for r in rows])
            scores = 1 / ((crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1]))
            keep = _plain_nms(torch.stack([r["box"] for r in rows]), scores, self.crop_nms_thresh)
            rows = [rows[i] for i in keep.tolist()]
        if self.min_mask_region_area > 0 and rows:
            rows = self._small_regions(rows)
        out = []
        for r in rows:
            if self.output_mode == "coco_rle":
                coco = mask_utils.frPyObjects(r["rle"], *r["rle"]["size"])
                segmentation: Any = {"size": coco["size"], "counts": coco["counts"].decode("utf-8")}
            elif self.output_mode == "binary_mask":
                segmentation = _decode_rle(r["rle"])
            else:
                segmentation = r["rle"]
            x0, y0, x1, y1 = r["box"].tolist()
            cx0, cy0, cx1, cy1 = r["crop_box"]
            out.append({"segmentation": segmentation, "area": sum(r["rle"]["counts"][1::2]),
                        "bbox": [x0, y0, x1 - x0, y1 - y0], "predicted_iou": r["iou"],
                        "point_coords": [r["point"]], "stability_score": r["stability"],
                        "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0]})
        return out

    def _crop(self, image: np.ndarray, crop_box: list[int], layer: int) -> list[dict[str, Any]]:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        ch, cw = crop.shape[:2]
        h, w = image.shape[:2]
        self.predictor.set_image(crop)
        points = self.point_grids[layer] * np.array([[cw, ch]])
        rows: list[dict[str, Any]] = []
        for start in range(0, len(points), self.points_per_batch):
            rows += self._batch(points[start:start + self.points_per_batch], (ch, cw), crop_box, (h, w))
        self.predictor.reset_image()
        if not rows:
            return []
        keep = _plain_nms(torch.stack([r["box"] for r in rows]), torch.tensor([r["iou"] for r in rows]),
                          self.box_nms_thresh)
        rows = [rows[i] for i in keep.tolist()]
        for r in rows:
            r["box"] = r["box"] + torch.tensor([x0, y0, x0, y0])
            r["point"] = [r["point"][0] + x0, r["point"][1] + y0]
            r["crop_box"] = crop_box
        return rows

    def _batch(self, points: np.ndarray, crop_size: tuple[int, int], crop_box: list[int],
               image_size: tuple[int, int]) -> list[dict[str, Any]]:
        model, config = self.model, self.model.config
        b = len(points)
        coords = transforms.scale_coords(points, crop_size, config.image_size)
        coords_t = torch.cat([torch.from_numpy(coords)[:, None], torch.zeros(b, 1, 2, dtype=torch.float64)], dim=1)
        labels = torch.tensor([[1, -1]] * b, dtype=torch.int32)
        low_res, iou = model.decode(self.predictor.get_image_embedding(), coords_t, labels)
        assert self.predictor.input_size is not None
        logits = model.postprocess_masks(low_res[:, 1:], self.predictor.input_size, crop_size).flatten(0, 1)
        iou = iou[:, 1:].flatten()
        point_rows = np.repeat(points, 3, axis=0)
        keep = torch.ones(len(iou), dtype=torch.bool)
        if self.pred_iou_thresh > 0:
            keep = iou > self.pred_iou_thresh
        logits, iou, point_rows = logits[keep], iou[keep], point_rows[keep.numpy()]
        t, off = config.mask_threshold, self.stability_score_offset
        stability = (logits > t + off).sum((-1, -2), dtype=torch.int32) / (logits > t - off).sum((-1, -2),
                                                                                                    dtype=torch.int32)
        if self.stability_score_thresh > 0:
            keep = stability >= self.stability_score_thresh
            logits, iou, point_rows, stability = logits[keep], iou[keep], point_rows[keep.numpy()], stability[keep]
        masks = logits > t
        boxes = _boxes(masks)
        x0, y0, x1, y1 = crop_box
        h, w = image_size
        rows = []
        for i in range(masks.shape[0]):
            image_box = boxes[i] + torch.tensor([x0, y0, x0, y0])
            near_crop = (image_box - torch.tensor(crop_box)).abs() <= 20
            near_image = (image_box - torch.tensor([0, 0, w, h])).abs() <= 20
            if bool((near_crop & ~near_image).any()):
                continue
            full = torch.zeros((h, w), dtype=torch.bool)
            full[y0:y1, x0:x1] = masks[i]
            rows.append({"rle": _rle(full), "box": boxes[i], "iou": float(iou[i]), "point": point_rows[i].tolist(),
                         "stability": float(stability[i])})
        return rows

    def _small_regions(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        new = []
        for r in rows:
            mask = _decode_rle(r["rle"])
            mask, c1 = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, c2 = remove_small_regions(mask, self.min_mask_region_area, "islands")
            new.append((mask, not (c1 or c2)))
        boxes = _boxes(torch.from_numpy(np.stack([m for m, _ in new])))
        scores = torch.tensor([float(u) for _, u in new])
        keep = _plain_nms(boxes, scores, max(self.box_nms_thresh, self.crop_nms_thresh))
        out = []
        for i in keep.tolist():
            r = dict(rows[i])
            if not new[i][1]:
                r["rle"] = _rle(torch.from_numpy(np.ascontiguousarray(new[i][0])))
                r["box"] = boxes[i]
            out.append(r)
        return out


def relative_difference(a: float, b: float) -> float:
    """``|a - b|`` relative to the larger magnitude: 0 when equal (both NaN included: an empty
    mask's stability), inf when exactly one is NaN."""
    if a != a or b != b:
        return 0.0 if (a != a and b != b) else float("inf")
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


def _same_float(a: float, b: float, rel_tol: float = 0.0) -> bool:
    return relative_difference(a, b) <= rel_tol


def compare_annotations(ours: list[dict[str, Any]], baseline: list[dict[str, Any]],
                        score_rel_tol: float = 0.0) -> str | None:
    """None when both lists hold the same masks in the same order with equal values, else the first
    difference in words. ``score_rel_tol``: relative tolerance for ``predicted_iou`` and
    ``stability_score`` only (float32 rounding where the two decode the point batch differently);
    everything else, segmentations included, must be equal."""
    if len(ours) != len(baseline):
        return f"{len(ours)} masks vs {len(baseline)}"
    for i, (a, b) in enumerate(zip(ours, baseline, strict=True)):
        if set(a) != set(b):
            return f"mask {i}: keys {sorted(a)} vs {sorted(b)}"
        for key in ("area", "bbox", "point_coords", "crop_box"):
            if a[key] != b[key]:
                return f"mask {i}: {key} {a[key]} vs {b[key]}"
        for key in ("predicted_iou", "stability_score"):
            if not _same_float(a[key], b[key], score_rel_tol):
                return f"mask {i}: {key} {a[key]!r} vs {b[key]!r}"
        sa, sb = a["segmentation"], b["segmentation"]
        same = np.array_equal(sa, sb) if isinstance(sa, np.ndarray) else sa == sb
        if not same:
            return f"mask {i}: segmentations differ"
    return None
