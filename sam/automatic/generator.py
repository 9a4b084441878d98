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

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sam.automatic import decoding, steps
from sam.automatic.crops import generate_crop_boxes
from sam.automatic.grid import build_layer_point_grids
from sam.automatic.nms import REFERENCE_VANILLA_MIN_BOXES, nms
from sam.automatic.params import OUTPUT_MODES, check_int, check_parameters, check_point_grids
from sam.automatic.records import MaskRecords
from sam.automatic.upscale import in_groups_of_three, upscale_logits
from sam.modeling.sam import Sam
from sam.predictor import Predictor

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
        check_parameters(points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
                         stability_score_thresh=stability_score_thresh,
                         stability_score_offset=stability_score_offset, box_nms_thresh=box_nms_thresh,
                         crop_n_layers=crop_n_layers, crop_nms_thresh=crop_nms_thresh,
                         crop_overlap_ratio=crop_overlap_ratio,
                         crop_n_points_downscale_factor=crop_n_points_downscale_factor,
                         min_mask_region_area=min_mask_region_area)
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}; got {output_mode!r}")
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids "
                             "(pass points_per_side=None together with point_grids)")
        if point_grids is not None:
            self.point_grids = check_point_grids(point_grids, crop_n_layers)
        else:
            check_int("points_per_side", points_per_side, 1)
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
            records = steps.clean_regions(records, self.min_mask_region_area,
                                          max(self.box_nms_thresh, self.crop_nms_thresh), nms_reference_order)
        return steps.to_annotations(records, self.output_mode)

    def _generate_records(self, image: np.ndarray, progress: ProgressCallback | None) -> MaskRecords:
        image_size = (int(image.shape[0]), int(image.shape[1]))
        crop_boxes, layers = generate_crop_boxes(image_size, self.crop_n_layers, self.crop_overlap_ratio)
        counter = _Progress(sum(len(self.point_grids[layer]) for layer in layers), progress)
        records = MaskRecords.cat([self._process_crop(image, crop_box, layer, counter)
                                   for crop_box, layer in zip(crop_boxes, layers, strict=True)])
        return steps.merge_crops(records, len(crop_boxes), self.crop_nms_thresh, nms_reference_order)

    def _process_crop(self, image: np.ndarray, crop_box: list[int], layer: int, counter: _Progress) -> MaskRecords:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        crop_size = (int(crop.shape[0]), int(crop.shape[1]))
        self.predictor.set_image(crop)
        points = steps.crop_points(self.point_grids[layer], crop_size)
        image_size = (int(image.shape[0]), int(image.shape[1]))
        parts = []
        for start in range(0, len(points), self.points_per_batch):
            batch = points[start:start + self.points_per_batch]
            parts.append(self._process_batch(batch, crop_size, crop_box, image_size))
            counter.advance(len(batch))
        self.predictor.reset_image()
        return steps.finish_crop(parts, crop_box, self.box_nms_thresh, nms_reference_order)

    def _process_batch(self, points: np.ndarray, crop_size: tuple[int, int], crop_box: list[int],
                       image_size: tuple[int, int]) -> MaskRecords:
        """Masks of one batch of ``Bx2`` points (crop pixels), filtered; boxes and points in crop
        pixels, RLEs in image pixels."""
        model = self.model
        config = model.config
        embedding = self.predictor.get_image_embedding()
        input_size = self.predictor.input_size or (0, 0)  # set together with the embedding
        coords_np, labels_np = steps.point_prompts(points, crop_size, config.image_size)
        coords, labels = torch.from_numpy(coords_np), torch.from_numpy(labels_np)
        low_res_of: Callable[[torch.Tensor], torch.Tensor]
        if self._decoder is not None:
            decoded = self._decoder.decode(embedding, coords, labels)
            iou, low_res_of = decoded.iou_predictions, decoded.low_res_masks
        else:
            all_low_res, iou = model.decode(embedding, coords, labels)
            low_res_of = all_low_res.__getitem__

        candidates = steps.select_candidates(iou.numpy(), self.pred_iou_thresh)
        if candidates.index.size == 0:
            return MaskRecords.empty()
        prompts, position = np.unique(candidates.prompt, return_inverse=True)
        low_res = low_res_of(torch.from_numpy(prompts))[torch.from_numpy(position.reshape(-1)),
                                                        torch.from_numpy(candidates.token)]  # K x 4g x 4g

        parts = []
        for start in range(0, low_res.shape[0], _UPSCALE_CHUNK):
            stop = start + _UPSCALE_CHUNK
            if self._plain_postprocess:
                logits = in_groups_of_three(lambda x: model.postprocess_masks(x, input_size, crop_size),
                                            low_res[start:stop])
            else:
                logits = upscale_logits(low_res[start:stop], config.image_size, input_size, crop_size)
            parts.append(steps.filter_masks(
                logits.numpy(), candidates.index[start:stop], candidates, points, crop_box, image_size,
                mask_threshold=config.mask_threshold, stability_score_thresh=self.stability_score_thresh,
                stability_score_offset=self.stability_score_offset))
        return MaskRecords.cat(parts)


def nms_reference_order(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """:func:`nms`, with the result order of torchvision's CPU ``batched_nms`` (one category).

    Up to 1000 boxes that is :func:`nms`'s order. From 1001 boxes on, the kept indices are taken in
    ascending order and reordered by ``torch.sort(scores[kept], descending=True)`` (not stable, so
    it takes torch to reproduce; ``scores`` should be float32, as the reference's are).
    """
    keep = nms(boxes, scores, iou_threshold)
    if np.asarray(boxes).shape[0] < REFERENCE_VANILLA_MIN_BOXES:
        return keep
    keep = np.sort(keep)
    kept_scores = torch.from_numpy(np.ascontiguousarray(np.asarray(scores)[keep]))
    return keep[kept_scores.sort(descending=True)[1].numpy()]


class _Progress:
    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback

    def advance(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)
