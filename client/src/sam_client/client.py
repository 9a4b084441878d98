"""The synchronous client. :class:`sam_client.AsyncSamClient` has the same methods, awaitable."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
import numpy as np

from sam_client import _core, _wellknown
from sam_client._proto import segment_anything_pb2 as pb
from sam_client.errors import DeadlineExceededError, NotFoundError, SamError, from_rpc_error
from sam_client.images import ImageInput, prepare_image
from sam_client.types import EmbedResult, Encoding, GeneratedMask, Mode, ModelInfo, PromptSet, SegmentResult

logger = logging.getLogger("sam_client")

EMBEDDING_NOT_FOUND = "EMBEDDING_NOT_FOUND"


class SamClient(_core.ClientBase):
    """Client of the Segment Anything service (``segmentanything.v1.SegmentAnythingService``).

    Args:
        address: ``host:port`` of the gateway.
        timeout_s: default deadline of each method call in seconds, retries included; every
            method also takes ``timeout_s=`` for that call.
        retry: back-off policy for UNAVAILABLE (the only code retried); ``sam_client.NO_RETRY``
            turns retries off.
        tls: use TLS with the system's root certificates (or ``root_certificates``).
        root_certificates: PEM bytes or a path to a PEM file; implies TLS.
        token: bearer token, sent as ``authorization: Bearer <token>`` metadata on every call.
        reuse_image_ids: ``segment(image)`` first asks by the image's content id (computed
            locally) and sends the pixels only if the server does not have its embedding
            (NOT_FOUND / EMBEDDING_NOT_FOUND), so an image is uploaded once.
        max_message_bytes: send and receive limit (gRPC's default of 4 MiB is too small here).
        options: extra gRPC channel arguments, overriding the defaults.
        metadata: extra metadata sent on every call.

    Use as a context manager, or call :meth:`close`. Methods raise :class:`sam_client.SamError`
    subclasses for server errors, and ``ValueError``/``TypeError``/``FileNotFoundError`` for
    arguments that cannot be sent.
    """

    _channels = grpc

    # -- plumbing ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deadline(self, timeout_s: float | None) -> float:
        return time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)

    def _call(self, call: Callable[..., Any], request: Any, deadline: float, what: str) -> Any:
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError(
                    grpc.StatusCode.DEADLINE_EXCEEDED, f"{what}: deadline passed before attempt {attempt + 1}"
                )
            attempt += 1
            try:
                return call(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                error.attempts = attempt  # type: ignore[attr-defined]
                pause = self.retry.pause_s(attempt, error, self._rng)
                if pause is None or time.monotonic() + pause >= deadline:
                    raise error from None
                logger.info("%s: %s; retry %d in %.2f s", what, error.code.name, attempt, pause)
                time.sleep(pause)

    # -- API --------------------------------------------------------------------------------------

    def embed(
        self, image: ImageInput, *, embedding_dtype: str | None = None, timeout_s: float | None = None
    ) -> EmbedResult:
        """Embed ``image`` (path, encoded bytes, uint8 HxWx3 RGB array or PIL image) and cache it on
        the server. ``embedding_dtype="float32"|"float16"`` also returns the embedding."""
        prepared = prepare_image(image)
        request = pb.EmbedImageRequest(
            image=prepared.message, embedding_data_type=_core.EMBEDDING_TYPES[embedding_dtype]
        )
        response = self._call(self._calls["EmbedImage"], request, self._deadline(timeout_s), "EmbedImage")
        return _core.parse_embed(response)

    def segment(
        self,
        image: ImageInput | None = None,
        *,
        image_id: str | None = None,
        points: Iterable[Any] | None = None,
        box: Any = None,
        mask_logits: np.ndarray | None = None,
        mask_id: str | None = None,
        prompt_sets: Iterable[PromptSet] | None = None,
        mode: Mode = "auto",
        encoding: Encoding = "rle",
        timeout_s: float | None = None,
    ) -> SegmentResult:
        """Predict ranked masks on ``image`` (or an already embedded ``image_id``).

        Prompts: ``points`` (``[(x, y)]``, ``[(x, y, label)]`` with label 1 foreground / 0
        background, or :class:`Point`), ``box`` (``(x0, y0, x1, y1)`` or :class:`Box`),
        ``mask_logits`` (``float32 [L, L]`` from an earlier ``encoding="logits"`` result) or
        ``mask_id`` (from an earlier mask) for one prompt set; or ``prompt_sets=[PromptSet(...),
        ...]`` for several. ``mode``: "auto" (3 masks for a single point, else 1), "multi" (3),
        "single" (1). ``encoding``: "rle" or "png" (masks decoded to ``bool [H, W]``) or "logits"
        (``Mask.low_res_logits``).
        """
        if (image is None) == (image_id is None):
            raise ValueError("give exactly one of image (path, bytes, array, PIL image) or image_id")
        request = _core.segment_request(
            points=points,
            box=box,
            mask_logits=mask_logits,
            mask_id=mask_id,
            prompt_sets=prompt_sets,
            mode=mode,
            encoding=encoding,
        )
        deadline = self._deadline(timeout_s)
        call = self._calls["Segment"]
        if image is None:
            request.image_id = image_id  # type: ignore[assignment]
            return _core.parse_segment(self._call(call, request, deadline, "Segment"))
        prepared = prepare_image(image)
        if self.reuse_image_ids:
            request.image_id = prepared.image_id
            try:
                return _core.parse_segment(self._call(call, request, deadline, "Segment"))
            except NotFoundError as error:
                if error.reason != EMBEDDING_NOT_FOUND:
                    raise
                logger.debug("image %s not cached on the server; sending it", prepared.image_id)
        request.image.CopyFrom(prepared.message)
        return _core.parse_segment(self._call(call, request, deadline, "Segment"))

    def model_info(self, *, timeout_s: float | None = None) -> ModelInfo:
        """The served model's name, version and sizes."""
        response = self._call(
            self._calls["GetModelInfo"], pb.GetModelInfoRequest(), self._deadline(timeout_s), "GetModelInfo"
        )
        return _core.parse_model_info(response)

    def delete_image(self, image_id: str, *, allow_missing: bool = False, timeout_s: float | None = None) -> bool:
        """Drop an image's cached embedding; True if it was cached. NotFoundError if it was not,
        unless ``allow_missing``. A non-``str`` ``image_id`` (bytes, array, PIL image) is taken as the
        image itself and its id computed locally."""
        if not isinstance(image_id, str):
            image_id = prepare_image(image_id).image_id
        request = pb.DeleteImageRequest(image_id=image_id, allow_missing=allow_missing)
        response = self._call(self._calls["DeleteImage"], request, self._deadline(timeout_s), "DeleteImage")
        return bool(response.deleted)

    def health(self, service: str = "", *, timeout_s: float | None = None) -> str:
        """The gRPC health status of ``service`` ("" = the whole server): "SERVING",
        "NOT_SERVING", "UNKNOWN" or "SERVICE_UNKNOWN". Not retried: it reports the state as is."""
        request = _wellknown.HealthCheckRequest(service=service)
        deadline = self._deadline(timeout_s)
        try:
            response = self._health(request, timeout=max(deadline - time.monotonic(), 0.001), metadata=self._metadata)
        except grpc.RpcError as rpc_error:
            raise from_rpc_error(rpc_error) from None
        return _wellknown.HEALTH_STATUS_NAMES.get(response.status, str(response.status))

    def generate(
        self,
        image: ImageInput | None = None,
        *,
        image_id: str | None = None,
        encoding: Encoding = "rle",
        timeout_s: float | None = None,
        **parameters: Any,
    ) -> Iterator[tuple[int, int, list[GeneratedMask]]]:
        """Automatic mask generation (GenerateMasks), as ``(points_done, points_total, masks)``
        per streamed message: progress messages (no masks) after each batch of grid points, then the
        masks in one or more messages, in the generator's order (concatenate them). ``parameters``
        are GenerateMasksRequest fields (points_per_side, pred_iou_thresh, ...; unset ones take the
        reference defaults); ``encoding`` "rle" or "png". Closing the iterator early cancels the
        call, which stops the server's work. InvalidArgumentError names a bad parameter;
        UnimplementedError comes from servers older than GenerateMasks."""
        if (image is None) == (image_id is None):
            raise ValueError("give exactly one of image or image_id")
        request = pb.GenerateMasksRequest(mask_encoding=_core._ENCODINGS[encoding], **parameters)
        if image is None:
            request.image_id = image_id  # type: ignore[assignment]
        else:
            request.image.CopyFrom(prepare_image(image).message)
        deadline = self._deadline(timeout_s)
        try:
            stream = self._calls["GenerateMasks"](
                request, timeout=max(deadline - time.monotonic(), 0.001), metadata=self._metadata
            )
            try:
                for message in stream:
                    masks = [_core.parse_generated(m, 0, 0) for m in message.masks]
                    yield message.points_done, message.points_total, masks
            finally:
                stream.cancel()  # a no-op once finished; stops the server's work when the caller stops early
        except grpc.RpcError as rpc_error:
            raise from_rpc_error(rpc_error) from None


__all__ = ["SamClient", "SamError"]
