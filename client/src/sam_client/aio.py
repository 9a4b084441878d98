"""The asyncio client: :class:`AsyncSamClient`, the same methods as :class:`sam_client.SamClient`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import grpc.aio
import numpy as np

from sam_client import _core, _wellknown
from sam_client._proto import segment_anything_pb2 as pb
from sam_client.client import EMBEDDING_NOT_FOUND
from sam_client.errors import DeadlineExceededError, NotFoundError, from_rpc_error
from sam_client.images import ImageInput, prepare_image
from sam_client.types import EmbedResult, Encoding, GeneratedMask, Mode, ModelInfo, PromptSet, SegmentResult

logger = logging.getLogger("sam_client")


class AsyncSamClient(_core.ClientBase):
    """asyncio client of the Segment Anything service; see :class:`sam_client.SamClient` for the
    arguments and the behaviour (deadlines, retries, image-id reuse, errors). Create it inside a
    running event loop; use ``async with`` or ``await client.close()``."""

    _channels = grpc.aio

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncSamClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _deadline(self, timeout_s: float | None) -> float:
        return time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)

    async def _call(self, call: Any, request: Any, deadline: float, what: str) -> Any:
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceededError(
                    grpc.StatusCode.DEADLINE_EXCEEDED, f"{what}: deadline passed before attempt {attempt + 1}"
                )
            attempt += 1
            try:
                return await call(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as rpc_error:
                error = from_rpc_error(rpc_error)
                error.attempts = attempt  # type: ignore[attr-defined]
                pause = self.retry.pause_s(attempt, error, self._rng)
                if pause is None or time.monotonic() + pause >= deadline:
                    raise error from None
                logger.info("%s: %s; retry %d in %.2f s", what, error.code.name, attempt, pause)
                await asyncio.sleep(pause)

    async def embed(
        self, image: ImageInput, *, embedding_dtype: str | None = None, timeout_s: float | None = None
    ) -> EmbedResult:
        """See :meth:`sam_client.SamClient.embed`."""
        prepared = prepare_image(image)
        request = pb.EmbedImageRequest(
            image=prepared.message, embedding_data_type=_core.EMBEDDING_TYPES[embedding_dtype]
        )
        response = await self._call(self._calls["EmbedImage"], request, self._deadline(timeout_s), "EmbedImage")
        return _core.parse_embed(response)

    async def segment(
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
        """See :meth:`sam_client.SamClient.segment`."""
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
            return _core.parse_segment(await self._call(call, request, deadline, "Segment"))
        prepared = prepare_image(image)
        if self.reuse_image_ids:
            request.image_id = prepared.image_id
            try:
                return _core.parse_segment(await self._call(call, request, deadline, "Segment"))
            except NotFoundError as error:
                if error.reason != EMBEDDING_NOT_FOUND:
                    raise
                logger.debug("image %s not cached on the server; sending it", prepared.image_id)
        request.image.CopyFrom(prepared.message)
        return _core.parse_segment(await self._call(call, request, deadline, "Segment"))

    async def model_info(self, *, timeout_s: float | None = None) -> ModelInfo:
        """See :meth:`sam_client.SamClient.model_info`."""
        response = await self._call(
            self._calls["GetModelInfo"], pb.GetModelInfoRequest(), self._deadline(timeout_s), "GetModelInfo"
        )
        return _core.parse_model_info(response)

    async def delete_image(self, image_id: str, *, allow_missing: bool = False, timeout_s: float | None = None) -> bool:
        """See :meth:`sam_client.SamClient.delete_image`."""
        if not isinstance(image_id, str):
            image_id = prepare_image(image_id).image_id
        request = pb.DeleteImageRequest(image_id=image_id, allow_missing=allow_missing)
        response = await self._call(self._calls["DeleteImage"], request, self._deadline(timeout_s), "DeleteImage")
        return bool(response.deleted)

    async def health(self, service: str = "", *, timeout_s: float | None = None) -> str:
        """See :meth:`sam_client.SamClient.health`."""
        request = _wellknown.HealthCheckRequest(service=service)
        try:
            response = await self._health(
                request, timeout=self.timeout_s if timeout_s is None else timeout_s, metadata=self._metadata
            )
        except grpc.RpcError as rpc_error:
            raise from_rpc_error(rpc_error) from None
        return _wellknown.HEALTH_STATUS_NAMES.get(response.status, str(response.status))

    async def generate(
        self,
        image: ImageInput | None = None,
        *,
        image_id: str | None = None,
        encoding: Encoding = "rle",
        timeout_s: float | None = None,
        **parameters: Any,
    ) -> AsyncIterator[tuple[int, int, list[GeneratedMask]]]:
        """See :meth:`sam_client.SamClient.generate`."""
        if (image is None) == (image_id is None):
            raise ValueError("give exactly one of image or image_id")
        request = pb.GenerateMasksRequest(mask_encoding=_core._ENCODINGS[encoding], **parameters)
        if image is None:
            request.image_id = image_id  # type: ignore[assignment]
        else:
            request.image.CopyFrom(prepare_image(image).message)
        try:
            stream = self._calls["GenerateMasks"](
                request, timeout=self.timeout_s if timeout_s is None else timeout_s, metadata=self._metadata
            )
            try:
                async for message in stream:
                    masks = [_core.parse_generated(m, 0, 0) for m in message.masks]
                    yield message.points_done, message.points_total, masks
            finally:
                stream.cancel()  # a no-op once finished; stops the server's work when the caller stops early
        except grpc.RpcError as rpc_error:
            raise from_rpc_error(rpc_error) from None
