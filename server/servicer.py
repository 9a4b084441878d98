"""The gRPC face of the gateway: ``segmentanything.v1.SegmentAnythingService`` on grpc.aio.

Each handler validates its request into the core's plain values (collecting every bad field into
one ``INVALID_ARGUMENT`` with ``BadRequest`` field violations), calls
:class:`server.service.SegmentationService`, and encodes the answer. Handlers raise
:class:`server.errors.ServiceError`; the error interceptor (``server/interceptors.py``) turns it
into the call's status. Field paths in violations use the proto field names, e.g.
``prompt_sets[1].points[0].label``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import numpy as np

from segmentanything.v1 import segment_anything_pb2 as pb
from segmentanything.v1 import segment_anything_pb2_grpc as pb_grpc
from server import codecs
from server.errors import FieldViolation, InvalidArgument, NotFound, Reason, ResourceExhausted
from server.generation import GeneratedMask, GenerationParams, MaskBatch, MaskGeneration
from server.service import (
    ImageRecord,
    ImageSource,
    MaskEncoding,
    MaskResult,
    MultimaskMode,
    Prompt,
    SegmentationService,
)
from server.settings import Settings

_LABELS = {pb.Point.FOREGROUND: 1, pb.Point.BACKGROUND: 0}
_MODES = {
    pb.SegmentRequest.MULTIMASK_MODE_UNSPECIFIED: MultimaskMode.AUTO,
    pb.SegmentRequest.AUTO: MultimaskMode.AUTO,
    pb.SegmentRequest.MULTI: MultimaskMode.MULTI,
    pb.SegmentRequest.SINGLE: MultimaskMode.SINGLE,
}
_ENCODINGS = {
    pb.Mask.ENCODING_UNSPECIFIED: MaskEncoding.RLE,
    pb.Mask.RLE: MaskEncoding.RLE,
    pb.Mask.PNG: MaskEncoding.PNG,
    pb.Mask.LOW_RES_LOGITS: MaskEncoding.LOW_RES_LOGITS,
}
_TENSOR_DTYPES: dict[int, codecs.TensorDtype] = {pb.Tensor.FLOAT32: "float32", pb.Tensor.FLOAT16: "float16"}


class _Violations:
    """Collects field violations; :meth:`raise_if_any` reports them all in one error."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def extend_from(self, error: InvalidArgument) -> None:
        self.items.extend(error.field_violations or [FieldViolation("", error.message)])

    def raise_if_any(self, reason: str = Reason.INVALID_ARGUMENT) -> None:
        if not self.items:
            return
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.items[:5])
        more = f" (and {len(self.items) - 5} more)" if len(self.items) > 5 else ""
        raise InvalidArgument(f"invalid request: {summary}{more}", reason, field_violations=self.items)


def image_source(message: pb.Image, field: str, present: bool = True) -> ImageSource:
    """The :class:`ImageSource` of an ``Image`` message at ``field`` (structure only; the pixels
    are checked when decoded)."""
    which = message.WhichOneof("source") if present else None
    if which is None:
        description = f"an image is required: set {field}.encoded (PNG, JPEG, WebP) or {field}.raw"
        raise InvalidArgument(description, field_violations=[FieldViolation(field, description)])
    if which == "encoded":
        return ImageSource(message.encoded, None, f"{field}.encoded")
    raw = message.raw
    return ImageSource(raw.rgb, (raw.width_px, raw.height_px), f"{field}.raw")


def tensor_to_array(tensor: pb.Tensor, field: str) -> np.ndarray:
    """A ``Tensor`` message as a float32 array (raises ``InvalidArgument`` naming ``field``)."""
    dtype = _TENSOR_DTYPES.get(tensor.data_type)
    if dtype is None:
        description = "data_type must be FLOAT32 or FLOAT16"
        raise InvalidArgument(description, field_violations=[FieldViolation(f"{field}.data_type", description)])
    return codecs.decode_tensor(tensor.data, list(tensor.shape), dtype, field=field)


def array_to_tensor(array: np.ndarray, dtype: codecs.TensorDtype = "float32") -> pb.Tensor:
    data, shape = codecs.encode_tensor(array, dtype)
    data_type = pb.Tensor.FLOAT16 if dtype == "float16" else pb.Tensor.FLOAT32
    return pb.Tensor(data_type=data_type, shape=shape, data=data)


def parse_prompt_sets(request: pb.SegmentRequest, settings: Settings) -> list[Prompt]:
    """The request's prompt sets as core :class:`Prompt` values, every structural problem reported.

    Raises:
        ResourceExhausted: more prompt sets than ``settings.max_prompt_sets``.
        InvalidArgument: anything else wrong with the sets' fields (reason ``INVALID_PROMPT``).
    """
    count = len(request.prompt_sets)
    if count > settings.max_prompt_sets:
        raise ResourceExhausted(
            f"at most {settings.max_prompt_sets} prompt sets per Segment call, got {count}; split the request",
            metadata={"limit": str(settings.max_prompt_sets)},
        )
    violations = _Violations()
    if count == 0:
        violations.add("prompt_sets", "give at least one prompt set (points and/or a box)")
    prompts: list[Prompt] = []
    for i, prompt_set in enumerate(request.prompt_sets):
        field = f"prompt_sets[{i}]"
        if len(prompt_set.points) > settings.max_points_per_set:
            violations.add(
                f"{field}.points", f"at most {settings.max_points_per_set} points per set, got {len(prompt_set.points)}"
            )
        points = np.zeros((len(prompt_set.points), 2), np.float64)
        labels = np.zeros(len(prompt_set.points), np.int32)
        for j, point in enumerate(prompt_set.points):
            for axis, value in (("x", point.x), ("y", point.y)):
                if not math.isfinite(value):
                    violations.add(f"{field}.points[{j}].{axis}", f"{axis} must be a finite number, got {value}")
            label = _LABELS.get(point.label)
            if label is None:
                violations.add(
                    f"{field}.points[{j}].label",
                    "label is required: FOREGROUND (on the object) or BACKGROUND (off it)",
                )
            else:
                labels[j] = label
            points[j] = (point.x, point.y)
        box = None
        if prompt_set.HasField("box"):
            b = prompt_set.box
            box = np.array([b.x_min, b.y_min, b.x_max, b.y_max], np.float64)
            for name, value in zip(("x_min", "y_min", "x_max", "y_max"), box.tolist(), strict=True):
                if not math.isfinite(value):
                    violations.add(f"{field}.box.{name}", f"{name} must be a finite number, got {value}")
        if not prompt_set.points and box is None:
            violations.add(
                field,
                "a prompt set needs at least one point or a box (a mask prompt alone is not enough)",
            )
        mask_logits = None
        mask_id = None
        if prompt_set.HasField("mask"):
            which = prompt_set.mask.WhichOneof("source")
            if which is None:
                violations.add(f"{field}.mask", "set mask.logits or mask.mask_id, or leave mask unset")
            elif which == "logits":
                try:
                    mask_logits = tensor_to_array(prompt_set.mask.logits, f"{field}.mask.logits")
                except InvalidArgument as error:
                    violations.extend_from(error)
            elif not prompt_set.mask.mask_id:
                violations.add(f"{field}.mask.mask_id", "mask_id is empty; give the mask_id of an earlier mask")
            else:
                mask_id = prompt_set.mask.mask_id
        prompts.append(Prompt(points, labels, box, mask_logits, mask_id, field))
    violations.raise_if_any(Reason.INVALID_PROMPT)
    return prompts


def _enum(value: int, table: Mapping[Any, Any], field: str, allowed: str) -> Any:
    if value not in table:
        description = f"unknown value {value}; use one of {allowed}"
        raise InvalidArgument(description, field_violations=[FieldViolation(field, description)])
    return table[value]


def mask_message(result: MaskResult, original_size: tuple[int, int]) -> pb.Mask:
    x0, y0, x1, y1 = result.bbox
    message = pb.Mask(
        mask_id=result.mask_id,
        score=result.score,
        area_px=result.area_px,
        bbox=pb.Box(x_min=x0, y_min=y0, x_max=x1, y_max=y1),
    )
    if result.rle is not None:
        message.rle.CopyFrom(
            pb.CocoRle(height_px=original_size[0], width_px=original_size[1], counts=result.rle.counts)
        )
    elif result.png is not None:
        message.png = result.png
    elif result.low_res_logits is not None:
        message.low_res_logits.CopyFrom(array_to_tensor(result.low_res_logits))
    return message


def generation_params(request: pb.GenerateMasksRequest) -> GenerationParams:
    """The request's generator parameters; unset (``optional``) fields keep the reference defaults."""
    given = {f.name: getattr(request, f.name) for f in dataclasses.fields(GenerationParams) if request.HasField(f.name)}
    return GenerationParams(**given)


def generated_mask_message(result: GeneratedMask, original_size: tuple[int, int]) -> pb.GeneratedMask:
    x0, y0, x1, y1 = result.crop_box
    return pb.GeneratedMask(
        mask=mask_message(result.mask, original_size),
        stability_score=result.stability_score,
        input_point=pb.Point(x=result.point[0], y=result.point[1], label=pb.Point.FOREGROUND),
        crop_box=pb.Box(x_min=x0, y_min=y0, x_max=x1, y_max=y1),
    )


def _size(size: tuple[int, int]) -> pb.ImageSize:
    return pb.ImageSize(height_px=size[0], width_px=size[1])


class SegmentAnythingServicer(pb_grpc.SegmentAnythingServiceServicer):
    """Thin handlers over :class:`SegmentationService` (see the module docstring)."""

    def __init__(self, service: SegmentationService, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.generation = MaskGeneration(service, settings)

    async def EmbedImage(  # noqa: N802
        self, request: pb.EmbedImageRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedImageResponse:
        dtype: codecs.TensorDtype | None = None
        if request.embedding_data_type != pb.Tensor.DATA_TYPE_UNSPECIFIED:
            dtype = _enum(request.embedding_data_type, _TENSOR_DTYPES, "embedding_data_type", "FLOAT32, FLOAT16")
        source = image_source(request.image, "image", request.HasField("image"))
        record = await self.service.embed_image(source)
        response = pb.EmbedImageResponse(
            image_id=record.image_id,
            original_size=_size(record.original_size),
            resized_size=_size(record.input_size),
            cached=record.cached,
        )
        if dtype is not None:
            response.embedding.CopyFrom(array_to_tensor(record.embedding, dtype))
        return response

    async def Segment(  # noqa: N802
        self, request: pb.SegmentRequest, context: grpc.aio.ServicerContext
    ) -> pb.SegmentResponse:
        mode = _enum(request.multimask_mode, _MODES, "multimask_mode", "AUTO, MULTI, SINGLE")
        encoding = _enum(request.mask_encoding, _ENCODINGS, "mask_encoding", "RLE, PNG, LOW_RES_LOGITS")
        prompts = parse_prompt_sets(request, self.settings)
        record = await self._image(request)
        results = await self.service.segment(record, prompts, mode, encoding)
        return pb.SegmentResponse(
            image_id=record.image_id,
            original_size=_size(record.original_size),
            cached=record.cached,
            results=[
                pb.PromptSetResult(masks=[mask_message(m, record.original_size) for m in masks]) for masks in results
            ],
        )

    async def _image(self, request: pb.SegmentRequest | pb.GenerateMasksRequest) -> ImageRecord:
        which = request.WhichOneof("image_source")
        if which == "image_id":
            return await self.service.lookup_image(request.image_id, "image_id")
        if which == "image":
            return await self.service.embed_image(image_source(request.image, "image"))
        description = "name the image: set image_id (from EmbedImage) or send the image inline"
        raise InvalidArgument(description, field_violations=[FieldViolation("image_source", description)])

    async def GetModelInfo(  # noqa: N802
        self, request: pb.GetModelInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelInfoResponse:
        info = await self.service.model_info()
        return pb.GetModelInfoResponse(
            name=info.name,
            version=info.version,
            image_size_px=info.image_size,
            embedding_shape=list(info.embedding_shape),
            low_res_mask_size_px=info.low_res_size,
            mask_threshold=info.mask_threshold,
            cache_float16=self.settings.cache_float16,
        )

    async def DeleteImage(  # noqa: N802
        self, request: pb.DeleteImageRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteImageResponse:
        deleted = await self.service.delete_image(request.image_id, "image_id")
        if not deleted and not request.allow_missing:
            raise NotFound(
                f"image {request.image_id} is not cached on this server; set allow_missing to ignore this",
                Reason.EMBEDDING_NOT_FOUND,
                metadata={"image_id": request.image_id},
            )
        return pb.DeleteImageResponse(deleted=deleted)

    async def GenerateMasks(  # noqa: N802
        self, request: pb.GenerateMasksRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.GenerateMasksResponse]:
        encoding = _enum(request.mask_encoding, _ENCODINGS, "mask_encoding", "RLE, PNG")
        if encoding == MaskEncoding.LOW_RES_LOGITS:
            description = "GenerateMasks returns masks as RLE or PNG; LOW_RES_LOGITS is only for Segment"
            raise InvalidArgument(description, field_violations=[FieldViolation("mask_encoding", description)])
        params = generation_params(request)
        known = request.WhichOneof("image_source") == "image_id"
        grids = self.generation.check(params, image_known=known)
        record = await self._image(request)
        source = None if known else image_source(request.image, "image")
        async for event in self.generation.generate(record, source, params, grids, encoding):
            if isinstance(event, MaskBatch):
                yield pb.GenerateMasksResponse(
                    masks=[generated_mask_message(m, record.original_size) for m in event.masks],
                    points_done=event.progress.points_done,
                    points_total=event.progress.points_total,
                )
            else:
                yield pb.GenerateMasksResponse(points_done=event.points_done, points_total=event.points_total)
