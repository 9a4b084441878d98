"""GenerateMasks' core: SAM's automatic mask generation through Triton, without torch.

The same algorithm, parameters and result order as :class:`sam.automatic.MaskGenerator`; the steps
around the decoder are literally its steps (:mod:`sam.automatic.steps`, numpy). What differs is who
computes the two model parts: the image embedding of the whole image is the cached one
(:meth:`SegmentationService.embed_image` / :meth:`~SegmentationService.lookup_image`); crops of
deeper layers are resized with :func:`sam.transforms.resize_image` and embedded by Triton (not
cached: they are not images a client sent). Every batch of grid points goes to Triton's decoder
(one request per batch, split further so that the answer stays below the message limit), and the
chosen low-res logits are upscaled with :func:`sam.transforms.upscale_logits` (numpy) instead of
``F.interpolate``. Masks can therefore differ from the in-process generator's at border pixels
whose logit is within float rounding of the threshold, and a mask whose predicted IoU or stability
is within rounding of a threshold can fall on the other side.

The generator yields :class:`Progress` after every batch of points and, once all crops are done
(duplicates can only be removed then), the masks. CPU work (upscaling, filtering, RLE) runs in a
worker thread, so the event loop keeps serving; when the client cancels, the task is cancelled at
its next ``await`` and no further Triton request is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam.automatic import steps
from sam.automatic.crops import generate_crop_boxes
from sam.automatic.grid import build_layer_point_grids
from sam.automatic.params import DEFAULTS, ParameterError, check_int, check_parameters
from sam.automatic.records import MaskRecords
from sam.automatic.rle import rle_area, rle_to_coco, rle_to_mask
from sam.transforms import resize_image, upscale_logits
from server import codecs
from server.backend.triton_client import ModelInfo
from server.errors import FieldViolation, InvalidArgument
from server.service import UPSCALE_CHUNK_VALUES, ImageRecord, ImageSource, MaskEncoding, MaskResult, SegmentationService
from server.settings import Settings

#: Mask payload bytes (RLE counts or PNG) per streamed message, so that the final messages stay far
#: below gRPC's default 4 MiB receive limit; a single larger mask goes alone.
MAX_MASK_BYTES_PER_MESSAGE = 1 << 20


@dataclass(frozen=True)
class GenerationParams:
    """The request's parameters, unset ones at the reference defaults (see the proto for each)."""

    points_per_side: int = DEFAULTS["points_per_side"]
    points_per_batch: int = DEFAULTS["points_per_batch"]
    pred_iou_thresh: float = DEFAULTS["pred_iou_thresh"]
    stability_score_thresh: float = DEFAULTS["stability_score_thresh"]
    stability_score_offset: float = DEFAULTS["stability_score_offset"]
    box_nms_thresh: float = DEFAULTS["box_nms_thresh"]
    crop_n_layers: int = DEFAULTS["crop_n_layers"]
    crop_nms_thresh: float = DEFAULTS["crop_nms_thresh"]
    crop_overlap_ratio: float = DEFAULTS["crop_overlap_ratio"]
    crop_n_points_downscale_factor: int = DEFAULTS["crop_n_points_downscale_factor"]
    min_mask_region_area: int = DEFAULTS["min_mask_region_area"]


@dataclass(frozen=True)
class Progress:
    """Grid points decoded so far and in total, over all crops."""

    points_done: int
    points_total: int


@dataclass(frozen=True)
class GeneratedMask:
    """One generated mask. ``mask.bbox`` is XYXY with inclusive ends (image pixels), ``mask.score``
    the predicted IoU; ``point`` is the prompting grid point ``(x, y)`` and ``crop_box`` the crop,
    XYXY with exclusive ends, both in image pixels."""

    mask: MaskResult
    stability_score: float
    point: tuple[float, float]
    crop_box: tuple[int, int, int, int]


@dataclass(frozen=True)
class MaskBatch:
    """Final masks, in the generator's order (concatenate the batches); progress is complete."""

    masks: list[GeneratedMask]
    progress: Progress


class MaskGeneration:
    """Runs GenerateMasks on a :class:`SegmentationService` (its Triton backend and caches)."""

    def __init__(self, service: SegmentationService, settings: Settings) -> None:
        self.service = service
        self.settings = settings

    def check(self, params: GenerationParams, *, image_known: bool) -> list[np.ndarray]:
        """The layers' point grids (fractions of the crop), after checking every parameter.

        Args:
            image_known: the request names a cached image (``image_id``) rather than sending it.

        Raises:
            InvalidArgument: a parameter out of range or over this server's limits, or crop layers
                for an image sent by id (the server keeps embeddings, not pixels), naming the field.
        """
        violations: list[FieldViolation] = []
        limits = (
            ("points_per_side", params.points_per_side, self.settings.max_generate_points_per_side,
             "--max-generate-points-per-side"),
            ("crop_n_layers", params.crop_n_layers, self.settings.max_generate_crop_layers,
             "--max-generate-crop-layers"),
        )  # fmt: skip
        for name, value, limit, flag in limits:
            if value > limit:
                violations.append(FieldViolation(
                    name, f"{name}={value} is over this server's limit of {limit} ({flag}); pass at most {limit}"
                ))
        try:
            check_int("points_per_side", params.points_per_side, 1)
            check_parameters(**{k: v for k, v in dataclasses.asdict(params).items() if k != "points_per_side"})
        except ParameterError as error:
            violations.append(FieldViolation(error.name, str(error)))
        if image_known and params.crop_n_layers > 0:
            violations.append(FieldViolation(
                "crop_n_layers",
                "crop layers need the image's pixels and this server keeps only embeddings: send the image "
                "inline (image) or set crop_n_layers to 0",
            ))
        grids: list[np.ndarray] = []
        if not violations:
            try:
                grids = build_layer_point_grids(params.points_per_side, params.crop_n_layers,
                                                params.crop_n_points_downscale_factor)
            except ValueError as error:
                violations.append(FieldViolation("points_per_side", str(error)))
        if violations:
            summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
            raise InvalidArgument(f"invalid GenerateMasks parameters: {summary}", field_violations=violations)
        return grids

    async def generate(self, record: ImageRecord, source: ImageSource | None, params: GenerationParams,
                       grids: Sequence[np.ndarray], encoding: MaskEncoding) -> AsyncIterator[Progress | MaskBatch]:
        """Progress after every batch of points, then the masks in one or more :class:`MaskBatch`.

        Args:
            record: the whole image's embedding (from the cache).
            source: the image as sent; required when ``params.crop_n_layers > 0`` (crops are cut from
                its pixels).
            grids: from :meth:`check`.
            encoding: RLE or PNG.
        """
        info = await self.service.model_info()
        height, width = record.original_size
        crop_boxes, layers = generate_crop_boxes(record.original_size, params.crop_n_layers,
                                                 params.crop_overlap_ratio)
        total = sum(len(grids[layer]) for layer in layers)
        done = 0
        pixels = None
        if len(crop_boxes) > 1:
            if source is None:
                raise ValueError("crop layers need the image as sent")
            pixels = await asyncio.to_thread(self._decode, source)
        crops: list[MaskRecords] = []
        for crop_box, layer in zip(crop_boxes, layers, strict=True):
            if layer == 0:
                embedding, input_size = record.embedding, record.input_size
            else:
                assert pixels is not None
                x0, y0, x1, y1 = crop_box
                resized = await asyncio.to_thread(resize_image, pixels[y0:y1, x0:x1], info.image_size)
                embedding = await self.service.backend.embed(resized)
                input_size = (int(resized.shape[0]), int(resized.shape[1]))
            crop_size = (crop_box[3] - crop_box[1], crop_box[2] - crop_box[0])
            points = steps.crop_points(grids[layer], crop_size)
            parts: list[MaskRecords] = []
            for start in range(0, len(points), params.points_per_batch):
                batch = points[start : start + params.points_per_batch]
                for sub in range(0, len(batch), self._decoder_points(info)):
                    sub_points = batch[sub : sub + self._decoder_points(info)]
                    coords, labels = steps.point_prompts(sub_points, crop_size, info.image_size)
                    low_res, iou = await self.service.backend.decode(
                        embedding, coords, labels,
                        np.zeros((len(sub_points), 1, info.low_res_size, info.low_res_size), np.float32),
                        np.zeros(len(sub_points), np.float32),
                    )  # fmt: skip
                    parts.append(await asyncio.to_thread(
                        _filter, low_res, iou, sub_points, crop_box, (height, width), crop_size, input_size,
                        info, params,
                    ))  # fmt: skip
                done += len(batch)
                yield Progress(done, total)
            crops.append(await asyncio.to_thread(steps.finish_crop, parts, crop_box, params.box_nms_thresh))
        masks = await asyncio.to_thread(self._finish, crops, len(crop_boxes), params, encoding, (height, width))
        progress = Progress(done, total)
        for chunk in _chunks(masks):
            yield MaskBatch(chunk, progress)

    def _decode(self, source: ImageSource) -> np.ndarray:
        limits: dict[str, Any] = {"max_pixels": self.settings.max_image_pixels,
                                  "max_bytes": self.settings.max_image_bytes}
        if source.raw_size is None:
            return codecs.decode_image(source.data, field=source.field, **limits)
        width, height = source.raw_size
        return codecs.decode_raw_rgb(source.data, width, height, field=source.field, **limits)

    def _decoder_points(self, info: ModelInfo) -> int:
        """Points per Triton decoder request: its answer (``[B, 4, L, L]`` float32) and the zero mask
        input (``[B, 1, L, L]``) take at most half the message limit."""
        per_point = 5 * 4 * info.low_res_size * info.low_res_size
        return max(1, (self.settings.max_message_bytes // 2) // per_point)

    def _finish(self, crops: list[MaskRecords], n_crops: int, params: GenerationParams, encoding: MaskEncoding,
                original_size: tuple[int, int]) -> list[GeneratedMask]:
        """NMS across crops, small-region cleaning, and the masks encoded (a worker thread's job)."""
        records = steps.merge_crops(MaskRecords.cat(crops), n_crops, params.crop_nms_thresh)
        if params.min_mask_region_area > 0:
            records = steps.clean_regions(records, params.min_mask_region_area,
                                          max(params.box_nms_thresh, params.crop_nms_thresh))
        out = []
        for i, rle in enumerate(records.rles):
            x0, y0, x1, y1 = (int(v) for v in records.boxes[i])
            if encoding == MaskEncoding.PNG:
                payload: dict[str, Any] = {"png": codecs.encode_png(rle_to_mask(rle))}
            else:
                counts = rle_to_coco(rle)["counts"]
                payload = {"rle": codecs.Rle(counts=counts, size=original_size)}
            mask = MaskResult(mask_id="", score=float(records.iou_predictions[i]), area_px=rle_area(rle),
                              bbox=(x0, y0, x1, y1), **payload)
            px, py = (float(v) for v in records.points[i])
            cx0, cy0, cx1, cy1 = (int(v) for v in records.crop_boxes[i])
            out.append(GeneratedMask(mask, float(records.stability_scores[i]), (px, py), (cx0, cy0, cx1, cy1)))
        return out


def _filter(low_res: np.ndarray, iou: np.ndarray, points: np.ndarray, crop_box: list[int],
            image_size: tuple[int, int], crop_size: tuple[int, int], input_size: tuple[int, int], info: ModelInfo,
            params: GenerationParams) -> MaskRecords:
    """The masks of one decoder answer that pass the filters (see :mod:`sam.automatic.steps`).

    Args:
        low_res: ``[B, 4, L, L]`` float32 logits and ``iou`` ``[B, 4]`` from the decoder.
        points: ``[B, 2]`` ``(x, y)`` crop pixels of the prompts.
        crop_box: XYXY (exclusive end) image pixels; ``image_size`` ``(H, W)`` of the whole image.
        crop_size: ``(h, w)`` of the crop; ``input_size`` the crop resized for the encoder.
    """
    candidates = steps.select_candidates(iou, params.pred_iou_thresh)
    chosen = low_res[candidates.prompt, candidates.token]  # K x L x L
    chunk = max(1, UPSCALE_CHUNK_VALUES // (crop_size[0] * crop_size[1]))
    parts = []
    for start in range(0, len(chosen), chunk):
        logits = upscale_logits(chosen[start : start + chunk], input_size, crop_size, info.image_size)
        parts.append(steps.filter_masks(
            logits, candidates.index[start : start + chunk], candidates, points, crop_box, image_size,
            mask_threshold=info.mask_threshold, stability_score_thresh=params.stability_score_thresh,
            stability_score_offset=params.stability_score_offset,
        ))  # fmt: skip
    return MaskRecords.cat(parts)


def _chunks(masks: list[GeneratedMask]) -> list[list[GeneratedMask]]:
    """``masks`` split, in order, into lists of at most :data:`MAX_MASK_BYTES_PER_MESSAGE` payload."""
    out: list[list[GeneratedMask]] = []
    size = 0
    for mask in masks:
        payload = len(mask.mask.png or b"") + len(mask.mask.rle.counts if mask.mask.rle is not None else "")
        if not out or (size + payload > MAX_MASK_BYTES_PER_MESSAGE and out[-1]):
            out.append([])
            size = 0
        out[-1].append(mask)
        size += payload
    return out
