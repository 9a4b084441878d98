"""The gateway's transport-neutral core: images to cached embeddings, prompts to ranked masks.

Nothing here knows gRPC. The servicer (``server/servicer.py``) turns requests into the plain values
below, calls :class:`SegmentationService`, and turns the results into responses; every failure is
a :class:`server.errors.ServiceError` whose field paths use the API's request field names.

Embedding: the image's content id (sha256 of its bytes, :func:`server.codecs.image_id`) is looked
up in the in-process LRU (and, when configured, the shared Redis cache) before any pixel is
decoded; on a miss the image is decoded, resized with :func:`sam.transforms.resize_image` (the
model package's own PIL bilinear resize) and embedded by Triton, once, however many requests ask
for it at the same time (single-flight).

Segmenting: each prompt set is packed with :func:`sam.prompts.pack_prompt_set` (coordinates to the
resized frame, a box as two corner points, SAM's padding point when there is no box). Sets that
pack to the same number of points go to the decoder together, one Triton call per distinct length,
and those calls run concurrently. The mask token follows the multimask mode (AUTO: the three
multimask outputs for a lone point, else the single-mask output). The chosen low-res logits of all
sets are then upscaled together with :func:`sam.transforms.upscale_logits`, thresholded, measured
(area, inclusive bounding box), ranked by predicted IoU (:func:`sam.ranking.rank_order`), given
mask ids in the bounded mask cache, and encoded (COCO RLE, PNG or the low-res logits).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from sam.prompts import LABEL_BACKGROUND, LABEL_FOREGROUND, PromptSet, pack_prompt_set
from sam.ranking import rank_order
from sam.transforms import resize_image, upscale_logits
from server import codecs
from server.backend.triton_client import InferenceBackend, ModelInfo
from server.cache.embedding_cache import EmbeddingCache, EmbeddingKey, ImageEmbedding
from server.cache.mask_cache import MaskCache
from server.cache.redis_cache import RedisEmbeddingCache
from server.errors import FieldViolation, InvalidArgument, NotFound, Reason
from server.observability.tracing import child_span, current_span_attributes
from server.settings import Settings

log = logging.getLogger(__name__)

IMAGE_ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")
#: Upscaled logits are computed in chunks of at most this many float32 values (about 256 MiB
#: with the intermediate arrays), so many masks of a large image do not need gigabytes at once.
UPSCALE_CHUNK_VALUES = 32 << 20
#: Images larger than this are hashed in a worker thread rather than on the event loop.
HASH_IN_THREAD_BYTES = 1 << 20
#: Mask post-processing of at most this many output pixels (all masks of a call) runs on the event
#: loop; more is split over worker threads.
INLINE_POSTPROCESS_VALUES = 1 << 18
#: Worker threads for mask post-processing (at most this many, and no more than the CPUs).
MAX_POSTPROCESS_WORKERS = 8


class MultimaskMode(StrEnum):
    """How many masks a prompt set returns (the API's ``SegmentRequest.MultimaskMode``)."""

    AUTO = "AUTO"  # MULTI for exactly one point and no box and no mask prompt, else SINGLE
    MULTI = "MULTI"  # the three multimask outputs (mask tokens 1..3)
    SINGLE = "SINGLE"  # the single-mask output (mask token 0)


class MaskEncoding(StrEnum):
    """How a mask's pixels are returned (the API's ``Mask.Encoding``)."""

    RLE = "RLE"
    PNG = "PNG"
    LOW_RES_LOGITS = "LOW_RES_LOGITS"


@dataclass(frozen=True)
class ImageSource:
    """An image as sent: encoded file bytes, or raw RGB bytes with ``raw_size=(width, height)``.

    ``field`` is its path in the request (for field violations), e.g. ``image`` or ``image.raw``.
    """

    data: bytes
    raw_size: tuple[int, int] | None = None
    field: str = "image"


@dataclass(frozen=True)
class Prompt:
    """One prompt set, already checked for structure by the transport layer.

    Attributes:
        points: ``float64 [N, 2]`` ``(x, y)`` in original-image pixels (N may be 0).
        labels: ``int32 [N]``: 1 foreground, 0 background.
        box: ``float64 [4]`` XYXY in original-image pixels, or ``None``.
        mask_logits: ``float32 [L, L]`` (or ``[1, L, L]``) low-res logits, or ``None``.
        mask_id: id of an earlier returned mask whose logits to use, or ``None``.
        field: the set's path in the request, e.g. ``prompt_sets[2]``.
    """

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None = None
    mask_logits: np.ndarray | None = None
    mask_id: str | None = None
    field: str = "prompt_sets[0]"

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def has_mask(self) -> bool:
        return self.mask_logits is not None or self.mask_id is not None


@dataclass(frozen=True)
class ImageRecord:
    """A cached (or just computed) embedding and what the caller needs to know about it.

    ``embedding`` is read-only ``float32 [256, g, g]`` (float16-rounded with the float16 cache).
    """

    image_id: str
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    cached: bool
    embedding: np.ndarray


@dataclass(frozen=True)
class MaskResult:
    """One returned mask. ``bbox`` is XYXY with inclusive pixel indices (zeros when empty).
    Exactly one of ``rle``, ``png``, ``low_res_logits`` is set, per the requested encoding."""

    mask_id: str
    score: float
    area_px: int
    bbox: tuple[int, int, int, int]
    rle: codecs.Rle | None = None
    png: bytes | None = None
    low_res_logits: np.ndarray | None = None


StageObserver = Callable[[str, float], None]


def choose_multimask(prompt: Prompt, mode: MultimaskMode) -> bool:
    """True when ``prompt`` returns the three multimask outputs under ``mode``."""
    if mode == MultimaskMode.MULTI:
        return True
    if mode == MultimaskMode.SINGLE:
        return False
    return prompt.num_points == 1 and prompt.box is None and not prompt.has_mask


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Inclusive XYXY boxes ``int64 [K, 4]`` of boolean masks ``[K, H, W]``; zeros for an empty mask."""
    k, height, width = masks.shape
    cols = masks.any(axis=1)  # [K, W]
    rows = masks.any(axis=2)  # [K, H]
    boxes = np.stack(
        [
            cols.argmax(axis=1),
            rows.argmax(axis=1),
            width - 1 - cols[:, ::-1].argmax(axis=1),
            height - 1 - rows[:, ::-1].argmax(axis=1),
        ],
        axis=1,
    ).astype(np.int64)
    boxes[~cols.any(axis=1)] = 0
    return boxes


class SegmentationService:
    """Embeds images (cached, single-flight) and predicts ranked masks for prompt sets.

    Args:
        backend: the model server (:class:`server.backend.triton_client.TritonClient`).
        settings: limits and cache sizes.
        redis: optional shared second-level embedding cache.
        observe_stage: called as ``observe_stage(stage, seconds)`` for the stages of a call
            (``decode_image``, ``embed``, ``decode_prompt``, ``upsample``, ``encode_masks``).
    """

    def __init__(
        self,
        backend: InferenceBackend,
        settings: Settings,
        *,
        redis: RedisEmbeddingCache | None = None,
        observe_stage: StageObserver | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.redis = redis
        self.embeddings = EmbeddingCache(settings.cache_capacity_bytes, float16=settings.cache_float16)
        self.masks = MaskCache(settings.mask_cache_entries)
        self._observe_stage = observe_stage
        self._model_id: str | None = None
        self._worker_count = max(1, min(MAX_POSTPROCESS_WORKERS, os.cpu_count() or 1))
        self._workers: ThreadPoolExecutor | None = ThreadPoolExecutor(
            self._worker_count, thread_name_prefix="postprocess"
        )

    def close(self) -> None:
        """Stop the worker threads (after the server stopped; later calls post-process inline)."""
        workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=True)

    @contextmanager
    def _stage(
        self, name: str, span_attributes: Mapping[str, AttributeValue] | None = None
    ) -> Iterator[Span | None]:
        """Times stage ``name`` for ``observe_stage``; with ``span_attributes`` it is also a child
        span of that name (a no-op span unless the call is traced), yielded for more attributes."""
        start = time.perf_counter()
        try:
            if span_attributes is None:
                yield None
            else:
                with child_span(name, span_attributes) as span:
                    yield span
        finally:
            if self._observe_stage is not None:
                self._observe_stage(name, time.perf_counter() - start)

    # -- model ------------------------------------------------------------------------------------------

    async def model_info(self) -> ModelInfo:
        """The served model (raises ``Unavailable`` while Triton is down or loading)."""
        info = await self.backend.model_info()
        if info.model_id != self._model_id:
            if self._model_id is not None:
                log.info(
                    "the served model changed from %s to %s; dropping cached embeddings", self._model_id, info.model_id
                )
                self.embeddings.clear()
            self._model_id = info.model_id
        return info

    # -- images -------------------------------------------------------------------------------------------

    def _decode_and_resize(self, source: ImageSource, image_size: int) -> tuple[np.ndarray, np.ndarray]:
        limits = {"max_pixels": self.settings.max_image_pixels, "max_bytes": self.settings.max_image_bytes}
        with self._stage("decode_image", {"sam.image.bytes": len(source.data)}) as span:
            if source.raw_size is None:
                pixels = codecs.decode_image(source.data, field=source.field, **limits)
            else:
                width, height = source.raw_size
                pixels = codecs.decode_raw_rgb(source.data, width, height, field=source.field, **limits)
            resized = resize_image(pixels, image_size)
            if span is not None and span.is_recording():
                span.set_attributes({
                    "sam.image.height_px": pixels.shape[0], "sam.image.width_px": pixels.shape[1],
                    "sam.resized.height_px": resized.shape[0], "sam.resized.width_px": resized.shape[1],
                })  # fmt: skip
            return pixels, resized

    async def embed_image(self, source: ImageSource) -> ImageRecord:
        """The embedding of ``source``: from the cache, or decoded, resized and encoded once.

        Raises:
            InvalidArgument: the image is malformed or over a size limit.
            Unavailable / DeadlineExceeded / Internal: from the Triton boundary.
        """
        info = await self.model_info()
        if len(source.data) > HASH_IN_THREAD_BYTES:  # sha256 runs ~0.5 GB/s: keep the loop free
            image_id = await asyncio.to_thread(codecs.image_id, source.data, source.raw_size)
        else:
            image_id = codecs.image_id(source.data, source.raw_size)
        key = EmbeddingKey(info.model_id, image_id)
        from_redis = False

        async def encode() -> ImageEmbedding:
            pixels, resized = await asyncio.to_thread(self._decode_and_resize, source, info.image_size)
            with self._stage("embed"):
                array = await self.backend.embed(resized)
            if array.shape != info.embedding_shape:
                raise ValueError(f"the encoder returned shape {list(array.shape)}, not {list(info.embedding_shape)}")
            return ImageEmbedding(array, (pixels.shape[0], pixels.shape[1]), (resized.shape[0], resized.shape[1]))

        async def compute() -> ImageEmbedding:
            nonlocal from_redis
            if self.redis is None:
                return await encode()
            embedding, from_redis = await self.redis.fetch_or_compute(key, encode)
            return embedding

        with child_span("embedding_cache.lookup", {"sam.model": info.model_id}) as span:
            lookup = await self.embeddings.get_or_compute(key, compute)
            cached = lookup.cached or from_redis
            if span.is_recording():
                source_name = "memory" if lookup.cached else "redis" if from_redis else "encoder"
                span.set_attributes({"sam.cache.hit": cached, "sam.cache.source": source_name,
                                     "sam.cache.single_flight_wait": lookup.joined})  # fmt: skip
        record = self._record(image_id, lookup.embedding, cached=cached)
        self._annotate(info, record)
        return record

    async def lookup_image(self, image_id: str, field: str = "image_id") -> ImageRecord:
        """The cached embedding of ``image_id``.

        Raises:
            InvalidArgument: ``image_id`` is not a lowercase sha256 hex string.
            NotFound: not cached (reason ``EMBEDDING_NOT_FOUND``: send the image again).
        """
        check_image_id(image_id, field)
        info = await self.model_info()
        key = EmbeddingKey(info.model_id, image_id)
        with child_span("embedding_cache.lookup", {"sam.model": info.model_id}) as span:
            embedding = self.embeddings.get(key)
            source_name = "memory"
            if embedding is None and self.redis is not None:
                shared = await self.redis.get(key)
                if shared is not None:
                    embedding = (await self.embeddings.get_or_compute(key, _returning(shared))).embedding
                    source_name = "redis"
            span.set_attribute("sam.cache.hit", embedding is not None)
            if embedding is not None:
                span.set_attribute("sam.cache.source", source_name)
        if embedding is None:
            raise NotFound(
                f"image {image_id} is not cached on this server (never sent, evicted, or deleted); "
                "send the image again, e.g. inline in Segment",
                Reason.EMBEDDING_NOT_FOUND,
                metadata={"image_id": image_id},
            )
        record = self._record(image_id, embedding, cached=True)
        self._annotate(info, record)
        return record

    async def delete_image(self, image_id: str, field: str = "image_id") -> bool:
        """Drop ``image_id``'s embedding; True if it was cached here (or in Redis)."""
        check_image_id(image_id, field)
        info = await self.model_info()
        key = EmbeddingKey(info.model_id, image_id)
        deleted = self.embeddings.delete(key)
        if self.redis is not None:
            deleted = await self.redis.delete(key) or deleted
        return deleted

    @staticmethod
    def _record(image_id: str, embedding: ImageEmbedding, *, cached: bool) -> ImageRecord:
        return ImageRecord(image_id, embedding.original_size, embedding.input_size, cached, embedding.array)

    @staticmethod
    def _annotate(info: ModelInfo, record: ImageRecord) -> None:
        """Model, image size and cache hit on the call's span (when traced)."""
        current_span_attributes({
            "sam.model": info.model_id, "sam.image.height_px": record.original_size[0],
            "sam.image.width_px": record.original_size[1], "sam.cache.hit": record.cached,
        })  # fmt: skip

    # -- prompts ----------------------------------------------------------------------------------------

    def _check_geometry(self, prompts: Sequence[Prompt], original_size: tuple[int, int]) -> None:
        height, width = original_size
        violations: list[FieldViolation] = []
        for prompt in prompts:
            for i, (x, y) in enumerate(prompt.points.tolist()):
                if not 0 <= x < width:
                    violations.append(
                        FieldViolation(
                            f"{prompt.field}.points[{i}].x", f"x={x:g} is outside the image: need 0 <= x < {width}"
                        )
                    )
                if not 0 <= y < height:
                    violations.append(
                        FieldViolation(
                            f"{prompt.field}.points[{i}].y", f"y={y:g} is outside the image: need 0 <= y < {height}"
                        )
                    )
            if prompt.box is not None:
                x0, y0, x1, y1 = prompt.box.tolist()
                for name, value, low, high in (
                    ("x_min", x0, 0.0, x1),
                    ("x_max", x1, x0, width),
                    ("y_min", y0, 0.0, y1),
                    ("y_max", y1, y0, height),
                ):
                    if not low <= value <= high:
                        violations.append(
                            FieldViolation(
                                f"{prompt.field}.box.{name}",
                                f"{name}={value:g} is out of range: need 0 <= x_min <= x_max <= {width} and "
                                f"0 <= y_min <= y_max <= {height}",
                            )
                        )
        if violations:
            raise InvalidArgument(
                f"{len(violations)} prompt coordinate(s) fall outside the {width}x{height} image: "
                + "; ".join(f"{v.field}: {v.description}" for v in violations[:5]),
                Reason.POINT_OUTSIDE_IMAGE,
                field_violations=violations,
            )

    def _mask_inputs(self, prompts: Sequence[Prompt], info: ModelInfo, image_id: str) -> list[np.ndarray | None]:
        size = info.low_res_size
        out: list[np.ndarray | None] = []
        for prompt in prompts:
            if prompt.mask_id is not None:
                stored = self.masks.get(prompt.mask_id)
                if stored is None or stored.model_id != info.model_id:
                    raise NotFound(
                        f"mask {prompt.mask_id} is unknown or expired on this server; send its low-res logits "
                        "instead (MaskPrompt.logits)",
                        Reason.MASK_NOT_FOUND,
                        metadata={"mask_id": prompt.mask_id},
                    )
                if stored.image_id != image_id:
                    raise _invalid_prompt(
                        f"mask {prompt.mask_id} belongs to another image; a mask prompt must come from the same image",
                        f"{prompt.field}.mask.mask_id",
                    )
                out.append(stored.logits)
            elif prompt.mask_logits is not None:
                logits = np.asarray(prompt.mask_logits, dtype=np.float32)
                if logits.ndim == 3 and logits.shape[0] == 1:
                    logits = logits[0]
                if logits.shape != (size, size):
                    raise _invalid_prompt(
                        f"mask logits must have shape [{size}, {size}] or [1, {size}, {size}] (the low-res mask "
                        f"size of this model), got {list(prompt.mask_logits.shape)}",
                        f"{prompt.field}.mask.logits.shape",
                    )
                out.append(logits)
            else:
                out.append(None)
        return out

    # -- segmenting ---------------------------------------------------------------------------------------

    async def segment(
        self,
        record: ImageRecord,
        prompts: Sequence[Prompt],
        mode: MultimaskMode = MultimaskMode.AUTO,
        encoding: MaskEncoding = MaskEncoding.RLE,
    ) -> list[list[MaskResult]]:
        """Ranked masks for each prompt set, in the order of ``prompts``.

        Raises:
            InvalidArgument: a point or box outside the image (``POINT_OUTSIDE_IMAGE``), a mask
                prompt of the wrong size or of another image (``INVALID_PROMPT``).
            NotFound: a mask id that is unknown or expired (``MASK_NOT_FOUND``).
            Unavailable / DeadlineExceeded / Internal: from the Triton boundary.
        """
        if not prompts:
            raise _invalid_prompt("give at least one prompt set", "prompt_sets")
        for prompt in prompts:
            if prompt.num_points == 0 and prompt.box is None:
                raise _invalid_prompt("a prompt set needs at least one point or a box", prompt.field)
        info = await self.model_info()
        current_span_attributes({"sam.prompt_sets": len(prompts), "sam.multimask_mode": mode.value,
                                 "sam.mask_encoding": encoding.value})  # fmt: skip
        self._check_geometry(prompts, record.original_size)
        mask_inputs = self._mask_inputs(prompts, info, record.image_id)

        packed = [
            pack_prompt_set(PromptSet(p.points, p.labels, p.box), record.original_size, info.image_size)
            for p in prompts
        ]
        groups: dict[int, list[int]] = defaultdict(list)
        for index, (coords, _) in enumerate(packed):
            groups[coords.shape[0]].append(index)

        low_res_size = info.low_res_size

        async def run(indices: list[int]) -> tuple[list[int], np.ndarray, np.ndarray]:
            coords = np.stack([packed[i][0] for i in indices])
            labels = np.stack([packed[i][1] for i in indices])
            mask_input = np.zeros((len(indices), 1, low_res_size, low_res_size), np.float32)
            has_mask = np.zeros(len(indices), np.float32)
            for row, i in enumerate(indices):
                given = mask_inputs[i]
                if given is not None:
                    mask_input[row, 0] = given
                    has_mask[row] = 1.0
            low_res, iou = await self.backend.decode(
                record.embedding, coords, labels, mask_input, has_mask,
                embedding_key=f"{info.model_id}/{record.image_id}",
            )  # fmt: skip
            return indices, low_res, iou

        with self._stage("decode_prompt"):
            decoded = await asyncio.gather(*(run(indices) for indices in groups.values()))

        # Choose tokens and rank, per set; then one vectorised pass over every chosen mask.
        chosen_logits: list[np.ndarray] = []
        chosen_scores: list[np.ndarray] = []
        counts = [0] * len(prompts)
        starts = [0] * len(prompts)
        per_set: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for indices, low_res, iou in decoded:
            for row, i in enumerate(indices):
                tokens = np.arange(1, 4) if choose_multimask(prompts[i], mode) else np.arange(0, 1)
                scores = iou[row, tokens]
                order = tokens[rank_order(scores)]
                per_set[i] = (low_res[row, order], iou[row, order])
        offset = 0
        for i in range(len(prompts)):
            logits, scores = per_set[i]
            chosen_logits.append(logits)
            chosen_scores.append(scores)
            starts[i], counts[i] = offset, len(scores)
            offset += len(scores)
        low_res_all = np.ascontiguousarray(np.concatenate(chosen_logits), dtype=np.float32)
        scores_all = np.concatenate(chosen_scores).astype(np.float32)

        # One span for turning the chosen logits into the response's masks (upscale, threshold,
        # measure, encode: the stage histogram splits the time; per-chunk spans would cost more).
        with child_span("encode_masks", {"sam.masks": len(low_res_all), "sam.mask_encoding": encoding.value}):
            areas, boxes, payloads = await self._postprocess_all(low_res_all, record, info, encoding)

        results: list[list[MaskResult]] = []
        keep_ids = self.masks.max_entries > 0
        for i in range(len(prompts)):
            masks = []
            for k in range(starts[i], starts[i] + counts[i]):
                mask_id = (
                    self.masks.put(low_res_all[k], model_id=info.model_id, image_id=record.image_id) if keep_ids else ""
                )
                x0, y0, x1, y1 = (int(v) for v in boxes[k])
                payload = payloads[k]
                masks.append(
                    MaskResult(
                        mask_id=mask_id,
                        score=float(scores_all[k]),
                        area_px=int(areas[k]),
                        bbox=(x0, y0, x1, y1),
                        rle=payload if isinstance(payload, codecs.Rle) else None,
                        png=payload if isinstance(payload, bytes) else None,
                        low_res_logits=payload if isinstance(payload, np.ndarray) else None,
                    )
                )
            results.append(masks)
        return results

    async def _postprocess_all(
        self, low_res: np.ndarray, record: ImageRecord, info: ModelInfo, encoding: MaskEncoding
    ) -> tuple[np.ndarray, np.ndarray, list[codecs.Rle | bytes | np.ndarray]]:
        """:meth:`_postprocess` of all K masks: inline when the job is small (a thread hand-off would
        cost more than it saves), else split over the worker threads (numpy releases the GIL), so a
        call's latency shrinks with the cores and the event loop stays free meanwhile."""
        height, width = record.original_size
        if len(low_res) * height * width <= INLINE_POSTPROCESS_VALUES or self._workers is None:
            return self._postprocess(low_res, record, info, encoding)
        loop = asyncio.get_running_loop()
        parts = np.array_split(np.arange(len(low_res)), min(len(low_res), self._worker_count))
        done = await asyncio.gather(
            *(
                loop.run_in_executor(
                    self._workers, self._postprocess, low_res[p[0] : p[-1] + 1], record, info, encoding
                )
                for p in parts
                if len(p)
            )
        )
        payloads = [payload for _, _, part in done for payload in part]
        return np.concatenate([a for a, _, _ in done]), np.concatenate([b for _, b, _ in done]), payloads

    def _postprocess(
        self, low_res: np.ndarray, record: ImageRecord, info: ModelInfo, encoding: MaskEncoding
    ) -> tuple[np.ndarray, np.ndarray, list[codecs.Rle | bytes | np.ndarray]]:
        """Upscale ``[K, L, L]`` logits, threshold, measure and encode."""
        height, width = record.original_size
        chunk = max(1, UPSCALE_CHUNK_VALUES // max(1, height * width))
        areas = np.zeros(len(low_res), np.int64)
        boxes = np.zeros((len(low_res), 4), np.int64)
        payloads: list[codecs.Rle | bytes | np.ndarray] = []
        for start in range(0, len(low_res), chunk):
            part = low_res[start : start + chunk]
            with self._stage("upsample"):
                logits = upscale_logits(part, record.input_size, record.original_size, info.image_size)
                masks = logits > info.mask_threshold
                areas[start : start + len(part)] = masks.sum(axis=(1, 2))
                boxes[start : start + len(part)] = mask_boxes(masks)
            with self._stage("encode_masks"):
                if encoding == MaskEncoding.RLE:
                    payloads.extend(codecs.encode_rle(masks))
                elif encoding == MaskEncoding.PNG:
                    payloads.extend(codecs.encode_png(mask) for mask in masks)
                else:
                    payloads.extend(np.array(p, dtype=np.float32) for p in part)
        return areas, boxes, payloads


def check_image_id(image_id: str, field: str = "image_id") -> None:
    """Raise ``InvalidArgument`` unless ``image_id`` is 64 lowercase hex characters (a sha256)."""
    if not IMAGE_ID_PATTERN.match(image_id):
        message = (
            f"image_id must be the 64-character lowercase hex sha256 returned by EmbedImage, got {image_id[:80]!r}"
        )
        raise InvalidArgument(message, field_violations=[FieldViolation(field, message)])


def _invalid_prompt(message: str, field: str) -> InvalidArgument:
    return InvalidArgument(message, Reason.INVALID_PROMPT, field_violations=[FieldViolation(field, message)])


def _returning(embedding: ImageEmbedding) -> Callable[[], asyncio.Future[ImageEmbedding]]:
    def compute() -> asyncio.Future[ImageEmbedding]:
        future: asyncio.Future[ImageEmbedding] = asyncio.get_running_loop().create_future()
        future.set_result(embedding)
        return future

    return compute


__all__ = [
    "LABEL_BACKGROUND",
    "LABEL_FOREGROUND",
    "ImageRecord",
    "ImageSource",
    "MaskEncoding",
    "MaskResult",
    "MultimaskMode",
    "Prompt",
    "SegmentationService",
    "check_image_id",
    "choose_multimask",
    "mask_boxes",
]
