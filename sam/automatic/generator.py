"""Fully automatic mask generation: a point grid prompts the model, filters keep good masks.

Same parameters, defaults, results and result order as the reference ``SamAutomaticMaskGenerator``.
For each crop (layer 0 is the whole image, deeper layers tile it with overlapping crops):

1. embed the crop; scale the layer's point grid to the crop's pixels;
2. per batch of ``points_per_batch`` points, each point a one-point prompt: decode the 3 multimask
   outputs, keep masks with predicted IoU ``> pred_iou_thresh`` (when positive), upscale their
   logits to the crop, keep masks with stability score ``>= stability_score_thresh`` (when
   positive), binarise at the model's mask threshold, drop masks whose box touches a crop edge
   that is not an image edge, move them to image pixels and run-length encode them;
3. NMS within the crop by predicted IoU (``box_nms_thresh``).

With several crops, an NMS across crops prefers masks from smaller crops (score ``1 / crop area``,
``crop_nms_thresh``). With ``min_mask_region_area > 0``, small islands and holes are removed and an
NMS prefers masks that did not change.

Faster than the reference, with identical output: the decoder runs with
:class:`~sam.automatic.decoding.PointGridDecoder` (cache-blocked, and it upscales only prompts with
a mask that passed the IoU filter), only IoU survivors are upsampled to crop pixels, and stability,
boxes and RLE are computed on batches of masks.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sam import transforms
from sam.automatic import decoding
from sam.automatic.boxes import box_area, masks_to_boxes, xyxy_to_xywh
from sam.automatic.crops import generate_crop_boxes, is_box_near_crop_edge, uncrop_boxes, uncrop_points
from sam.automatic.grid import build_layer_point_grids
from sam.automatic.nms import nms_reference_order
from sam.automatic.records import MaskRecords
from sam.automatic.regions import remove_small_regions
from sam.automatic.rle import masks_to_rles, rle_area, rle_to_coco, rle_to_mask
from sam.automatic.runs import ColumnRuns
from sam.automatic.stability import stability_score
from sam.automatic.upscale import in_groups_of_three, upscale_logits
from sam.modeling.sam import Sam
from sam.predictor import Predictor
from sam.prompts import LABEL_FOREGROUND, LABEL_PADDING

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

#: Masks upscaled to crop pixels and scanned at a time, a multiple of 3 (see sam.automatic.upscale):
#: 3 masks of 1024 x 1024 float32 logits (12 MB) stay in cache between upscaling, thresholds and the
#: column scan (measured about 30% faster than 16).
_UPSCALE_CHUNK = 3

ProgressCallback = Callable[[int, int], None]


class MaskGenerator:
    """Generates masks for a whole image, SA-1B style.

    Args:
        model: the :class:`~sam.modeling.sam.Sam` to run.
        points_per_side: points per side of the layer-0 grid (``n x n`` points); ``None`` when
            ``point_grids`` is given.
        points_per_batch: points decoded together (memory vs speed; does not change the result).
        pred_iou_thresh: keep masks whose predicted IoU is above this (not applied when <= 0).
        stability_score_thresh: keep masks whose stability score is at least this (not applied when <= 0).
        stability_score_offset: logit offset for the stability score (``>= 0``).
        box_nms_thresh: IoU above which NMS within a crop drops the lower-scored mask box, ``[0, 1]``.
        crop_n_layers: crop layers beyond the full image; layer ``i`` has ``2**i x 2**i`` crops.
        crop_nms_thresh: IoU threshold of the NMS across crops, ``[0, 1]``.
        crop_overlap_ratio: crop overlap as a fraction of the short image side (layer 1), ``[0, 1)``.
        crop_n_points_downscale_factor: layer ``i`` gets ``points_per_side / factor**i`` points per side.
        point_grids: explicit grids, one ``Nx2`` array of ``(x, y)`` in ``[0, 1]`` per crop layer
            (at least ``crop_n_layers + 1``); requires ``points_per_side=None``.
        min_mask_region_area: remove islands and fill holes smaller than this many pixels (0: off).
        output_mode: ``"binary_mask"`` (``HxW`` bool arrays), ``"uncompressed_rle"`` or ``"coco_rle"``.

    Raises:
        ValueError: a parameter is out of range, naming it and what to pass instead.
    """

    def __init__(self, model: Sam, points_per_side: int | None = 32, points_per_batch: int = 64,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                 stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                 crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                 crop_n_points_downscale_factor: int = 1, point_grids: Sequence[np.ndarray] | None = None,
                 min_mask_region_area: int = 0, output_mode: str = "binary_mask") -> None:
        if not isinstance(model, Sam):
            raise ValueError(f"model must be a sam.Sam (from sam.build_model), got {type(model).__name__}")
        _check_int("points_per_batch", points_per_batch, 1)
        _check_int("crop_n_layers", crop_n_layers, 0)
        _check_int("crop_n_points_downscale_factor", crop_n_points_downscale_factor, 1)
        _check_real("pred_iou_thresh", pred_iou_thresh)
        _check_real("stability_score_thresh", stability_score_thresh)
        _check_real("stability_score_offset", stability_score_offset, low=0.0)
        _check_real("box_nms_thresh", box_nms_thresh, low=0.0, high=1.0)
        _check_real("crop_nms_thresh", crop_nms_thresh, low=0.0, high=1.0)
        _check_real("crop_overlap_ratio", crop_overlap_ratio, low=0.0, high=1.0, high_open=True)
        _check_real("min_mask_region_area", min_mask_region_area, low=0.0)
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}; got {output_mode!r}")
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids "
                             "(pass points_per_side=None together with point_grids)")
        if point_grids is not None:
            self.point_grids = _check_point_grids(point_grids, crop_n_layers)
        else:
            _check_int("points_per_side", points_per_side, 1)
            self.point_grids = build_layer_point_grids(int(points_per_side), crop_n_layers,  # type: ignore[arg-type]
                                                       crop_n_points_downscale_factor)

        self.model = model
        self.predictor = Predictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = float(pred_iou_thresh)
        self.stability_score_thresh = float(stability_score_thresh)
        self.stability_score_offset = float(stability_score_offset)
        self.box_nms_thresh = float(box_nms_thresh)
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = float(crop_nms_thresh)
        self.crop_overlap_ratio = float(crop_overlap_ratio)
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self._decoder = decoding.PointGridDecoder(model) if decoding.supports(model) else None
        # upscale_logits reproduces Sam.postprocess_masks; a model that overrides it keeps its own.
        self._plain_postprocess = type(model).postprocess_masks is not Sam.postprocess_masks

    @torch.inference_mode()
    def generate(self, image: np.ndarray, progress: ProgressCallback | None = None) -> list[dict[str, Any]]:
        """Generates masks for an ``HxWx3`` uint8 RGB image.

        Args:
            image: ``HxWx3`` uint8, RGB.
            progress: called as ``progress(points_done, points_total)`` after each point batch (over
                all crops); an exception raised there stops the generation and propagates.

        Returns:
            One dict per mask, in the reference generator's order:

            - ``segmentation``: ``HxW`` bool array, uncompressed RLE dict or COCO RLE dict (``counts`` str),
              by ``output_mode``;
            - ``area`` (int): mask pixels;
            - ``bbox`` (list of 4 ints): XYWH in image pixels, ``w = x1 - x0`` of the inclusive box;
            - ``predicted_iou`` (float), ``stability_score`` (float);
            - ``point_coords`` (``[[x, y]]`` floats): the prompting point in image pixels;
            - ``crop_box`` (list of 4 ints): XYWH of the crop in image pixels.
        """
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be an HxWx3 numpy array, got shape {getattr(image, 'shape', None)}")
        if image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 RGB (0..255), got dtype {image.dtype}; convert it first")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image is empty: shape {image.shape}")
        records = self._generate_records(image, progress)
        if self.min_mask_region_area > 0:
            records = self._remove_small_regions(records)
        return self._annotations(records)

    def _generate_records(self, image: np.ndarray, progress: ProgressCallback | None) -> MaskRecords:
        image_size = (int(image.shape[0]), int(image.shape[1]))
        crop_boxes, layers = generate_crop_boxes(image_size, self.crop_n_layers, self.crop_overlap_ratio)
        counter = _Progress(sum(len(self.point_grids[layer]) for layer in layers), progress)
        records = MaskRecords.cat([self._process_crop(image, crop_box, layer, counter)
                                   for crop_box, layer in zip(crop_boxes, layers, strict=True)])
        if len(crop_boxes) > 1 and len(records):
            scores = 1 / box_area(records.crop_boxes)  # smaller crops win
            records = records.select(nms_reference_order(records.boxes.float(), scores, self.crop_nms_thresh))
        return records

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer: int, counter: _Progress) -> MaskRecords:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        crop_size = (int(crop.shape[0]), int(crop.shape[1]))
        self.predictor.set_image(crop)
        points = self.point_grids[layer] * np.array(crop_size)[None, ::-1]  # (x, y) crop pixels, float64
        image_size = (int(image.shape[0]), int(image.shape[1]))
        parts = []
        for start in range(0, len(points), self.points_per_batch):
            batch = points[start:start + self.points_per_batch]
            parts.append(self._process_batch(batch, crop_size, crop_box, image_size))
            counter.advance(len(batch))
        self.predictor.reset_image()
        records = MaskRecords.cat(parts)
        keep = nms_reference_order(records.boxes.float(), records.iou_predictions, self.box_nms_thresh)
        records = records.select(keep)
        records.boxes = uncrop_boxes(records.boxes, crop_box)
        records.points = uncrop_points(records.points, crop_box)
        return records

    def _process_batch(self, points: np.ndarray, crop_size: tuple[int, int], crop_box: list[int],
                       image_size: tuple[int, int]) -> MaskRecords:
        """Masks of one batch of ``Bx2`` points (crop pixels), filtered; boxes and points in crop
        pixels, RLEs in image pixels."""
        model = self.model
        config = model.config
        embedding = self.predictor.get_image_embedding()
        input_size = self.predictor.input_size or (0, 0)  # set together with the embedding
        b = points.shape[0]
        # Each point is a prompt set: the point (label 1) and the padding point. The coordinates stay
        # float64 (sam.prompts packs float32): the reference generator passes float64 and the prompt
        # encoder normalises them before casting to float32, so rounding to float32 first would change
        # the last bit of some positional encodings, and with it the logits.
        resized = transforms.scale_coords(points, crop_size, config.image_size)
        coords = torch.from_numpy(np.concatenate([resized[:, None, :], np.zeros((b, 1, 2))], axis=1))
        labels = torch.tensor([LABEL_FOREGROUND, LABEL_PADDING], dtype=torch.int32).expand(b, 2)
        low_res_of: Callable[[torch.Tensor], torch.Tensor]
        if self._decoder is not None:
            decoded = self._decoder.decode(embedding, coords, labels)
            iou, low_res_of = decoded.iou_predictions, decoded.low_res_masks
        else:
            all_low_res, iou = model.decode(embedding, coords, labels)
            low_res_of = all_low_res.__getitem__

        multimask_iou = iou[:, 1:]  # tokens 1..3, prompt-major like the reference's flatten(0, 1)
        n_tokens = multimask_iou.shape[1]
        flat_iou = multimask_iou.reshape(-1)
        if self.pred_iou_thresh > 0.0:
            candidates = torch.nonzero(flat_iou > self.pred_iou_thresh).flatten()
        else:
            candidates = torch.arange(flat_iou.numel())
        if candidates.numel() == 0:
            return MaskRecords.empty()
        prompt_of = candidates // n_tokens
        prompts, position = torch.unique(prompt_of, sorted=True, return_inverse=True)
        low_res = low_res_of(prompts)[position, candidates % n_tokens + 1]  # K x 4g x 4g

        threshold = config.mask_threshold
        image_box = [0, 0, image_size[1], image_size[0]]
        parts = []
        for start in range(0, low_res.shape[0], _UPSCALE_CHUNK):
            stop = start + _UPSCALE_CHUNK
            if self._plain_postprocess:
                logits = in_groups_of_three(lambda x: model.postprocess_masks(x, input_size, crop_size),
                                            low_res[start:stop])
            else:
                logits = upscale_logits(low_res[start:stop], config.image_size, input_size, crop_size)
            stability = stability_score(logits, threshold, self.stability_score_offset)
            index = candidates[start:stop]
            if self.stability_score_thresh > 0.0:
                keep = stability >= self.stability_score_thresh
                logits, stability, index = logits[keep], stability[keep], index[keep]
            runs = ColumnRuns.from_masks(logits > threshold)
            del logits
            boxes = runs.boxes()
            inside = torch.nonzero(~is_box_near_crop_edge(boxes, crop_box, image_box)).flatten()
            if inside.numel() == 0:
                continue
            rles = runs.rles(crop_box, image_size, which=inside.tolist())
            boxes, stability, index = boxes[inside], stability[inside], index[inside]
            prompt_index = (index // n_tokens).numpy()
            parts.append(MaskRecords(
                rles=rles,
                boxes=boxes,
                iou_predictions=flat_iou[index],
                points=torch.from_numpy(points[prompt_index]),
                stability_scores=stability,
                crop_boxes=torch.tensor([crop_box], dtype=torch.int64).expand(len(rles), 4),
            ))
        return MaskRecords.cat(parts)

    def _remove_small_regions(self, records: MaskRecords) -> MaskRecords:
        """Removes islands and fills holes below ``min_mask_region_area``, then NMS preferring masks that
        did not change (score 1 for unchanged, 0 for changed) with ``max(box_nms_thresh, crop_nms_thresh)``."""
        if not len(records):
            return records
        new_rles: dict[int, dict[str, Any]] = {}
        boxes = []
        scores = []
        for i, rle in enumerate(records.rles):
            mask = rle_to_mask(rle)
            mask, filled = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, removed = remove_small_regions(mask, self.min_mask_region_area, "islands")
            changed = filled or removed
            mask_t = torch.from_numpy(mask)[None]
            boxes.append(masks_to_boxes(mask_t)[0])
            scores.append(0.0 if changed else 1.0)
            if changed:
                new_rles[i] = masks_to_rles(mask_t)[0]
        new_boxes = torch.stack(boxes)
        keep = nms_reference_order(new_boxes.float(), torch.tensor(scores, dtype=torch.float32),
                                   max(self.box_nms_thresh, self.crop_nms_thresh))
        records.rles = list(records.rles)
        records.boxes = records.boxes.clone()
        for i in keep.tolist():
            if i in new_rles:
                records.rles[i] = new_rles[i]
                records.boxes[i] = new_boxes[i]
        return records.select(keep)

    def _annotations(self, records: MaskRecords) -> list[dict[str, Any]]:
        boxes = records.boxes.tolist()
        crop_boxes = records.crop_boxes.tolist()
        points = records.points.tolist()
        ious = records.iou_predictions.tolist()
        stabilities = records.stability_scores.tolist()
        out = []
        for i, rle in enumerate(records.rles):
            if self.output_mode == "binary_mask":
                segmentation: Any = rle_to_mask(rle)
            elif self.output_mode == "coco_rle":
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


class _Progress:
    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback

    def advance(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _check_real(name: str, value: Any, low: float | None = None, high: float | None = None,
                high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    value = float(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        bound = f"< {high}" if high_open else f"<= {high}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def _check_point_grids(point_grids: Sequence[np.ndarray], crop_n_layers: int) -> list[np.ndarray]:
    grids = list(point_grids)
    if len(grids) < crop_n_layers + 1:
        raise ValueError(f"point_grids needs one grid per crop layer: {crop_n_layers + 1} for "
                         f"crop_n_layers={crop_n_layers}, got {len(grids)}")
    out = []
    for i, grid in enumerate(grids):
        array = np.asarray(grid, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
            raise ValueError(f"point_grids[{i}] must be a non-empty Nx2 array of (x, y), got shape {array.shape}")
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError(f"point_grids[{i}] must hold (x, y) fractions of the crop in [0, 1]")
        out.append(array)
    return out
