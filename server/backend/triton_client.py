"""The gateway's only door to Triton: an asyncio gRPC client for the encoder and decoder models.

What crosses here (names and shapes are the model repository's contract, ``docs/contracts.md``):

- ``sam_encoder``: the resized image ``uint8 [h, w, 3]`` (long side == image_size) in, the
  embedding ``float32 [256, g, g]`` out (``image_embeddings__0``).
- ``sam_decoder``: one embedding and B packed prompt sets in, ``low_res_masks__0``
  ``float32 [B, 4, 4g, 4g]`` and ``iou_predictions__1`` ``float32 [B, 4]`` out.
- :meth:`TritonClient.model_info`: name, version and sizes, from the ``sam_*`` parameters that the
  repository builder writes into each model's config (the gateway never loads the model itself).

Errors are mapped here, once: Triton unreachable, not ready, or the model not loaded ->
:class:`~server.errors.Unavailable` (reason ``BACKEND_UNAVAILABLE``, the only retryable code); a
timeout -> ``DeadlineExceeded``; Triton rejecting the request's tensors -> ``InvalidArgument``;
a model failing on a request -> ``Internal`` (Triton's message is logged under an incident id,
not sent to the caller).

Shared memory: with ``use_shared_memory`` (gateway and Triton on one host, one ``/dev/shm``), the
embedding travels through system shared memory instead of the gRPC message, in both directions
(encoder output, decoder input), and so do the decoder's outputs of calls with at most
:data:`SHARED_OUTPUT_SETS` prompt sets (larger calls get them in the response). Regions come from a
pool (:class:`SharedMemoryPool`), one region per in-flight call, laid out as ``[embedding | low-res
masks | IoU predictions]``, created and registered with Triton on first use and reused afterwards.
A region remembers which cached embedding it holds, so repeated prompts on one image do not copy
the embedding again;
:meth:`TritonClient.close` unregisters and unlinks them all. Triton forgets registrations when it
restarts: a call that fails for that reason re-registers its region and is retried once. If Triton
cannot open the regions at all (it is not on this host), the client logs a warning and falls back
to plain tensors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import numpy as np
import tritonclient.grpc.aio as triton_aio
import tritonclient.utils.shared_memory as shm
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from sam.config import SamConfig
from server.errors import DeadlineExceeded, Internal, InvalidArgument, Reason, ServiceError, Unavailable
from server.observability.tracing import child_span

log = logging.getLogger(__name__)

ENCODER_INPUT = "image"
ENCODER_OUTPUT = "image_embeddings__0"
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
DECODER_OUTPUTS = ("low_res_masks__0", "iou_predictions__1")

#: Reconnect quickly after Triton comes back, so health follows it within about a second
#: (gRPC's default backoff starts at 1 s and grows to 120 s).
RECONNECT_BACKOFF_MS = {"initial": 100, "min": 100, "max": 1000}
#: Seconds a readiness or metadata call may take (health polls must not hang on a dead peer).
CONTROL_TIMEOUT_S = 2.0
UNREGISTER_ATTEMPTS = 5  # 0.05 + 0.1 + 0.2 + 0.4 s of waits at most, only while Triton says INTERNAL
#: Suggested client back-off when the backend is unavailable (``google.rpc.RetryInfo``).
RETRY_DELAY_S = 1.0
_MAX_ERROR_TEXT = 300
#: Decoder calls with at most this many prompt sets get their outputs through the shared-memory
#: region too (each region reserves room for them: 4 MiB for vit_b's 4 x 256 x 256 float32 masks
#: per set). Measured on vit_b (one set): Triton's output stage 1.5-2 ms -> 0.5 ms.
SHARED_OUTPUT_SETS = 4


@dataclass(frozen=True)
class ModelInfo:
    """The served model, as the repository builder described it in the Triton configs.

    Attributes:
        name: model name (``sam_model_name``), e.g. ``vit_b`` or ``tiny``.
        version: content id of the weights (``sam_model_version``, a sha256 prefix).
        image_size: side S of the square encoder input, pixels (resized long side).
        embedding_size: side g of the embedding grid.
        low_res_size: side L = 4g of the low-res mask logits (and of mask prompts).
        mask_threshold: logit threshold of a mask pixel.
        channels: embedding channels (256).
    """

    name: str
    version: str
    image_size: int
    embedding_size: int
    low_res_size: int
    mask_threshold: float
    channels: int = 256

    @property
    def model_id(self) -> str:
        """Key component of cached embeddings and masks: name and weights version."""
        return f"{self.name}@{self.version}"

    @property
    def embedding_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.embedding_size, self.embedding_size)

    @property
    def embedding_nbytes(self) -> int:
        """Bytes of one float32 embedding."""
        return 4 * self.channels * self.embedding_size * self.embedding_size

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> ModelInfo:
        """From a model config's ``sam_*`` parameters (string values).

        Raises:
            ValueError: a parameter is missing or does not parse.
        """
        missing = [k for k in ("sam_model_name", "sam_model_version", "sam_config") if k not in parameters]
        if missing:
            raise ValueError(
                f"model config lacks parameters {missing}; build the repository with python -m "
                "sam.export.model_repository"
            )
        config = SamConfig.from_dict(json.loads(parameters["sam_config"]))
        info = cls(
            name=parameters["sam_model_name"],
            version=parameters["sam_model_version"],
            image_size=config.image_size,
            embedding_size=config.embedding_size,
            low_res_size=config.low_res_size,
            mask_threshold=float(config.mask_threshold),
            channels=config.prompt_embed_dim,
        )
        for key, value in (("sam_image_size", info.image_size), ("sam_embedding_size", info.embedding_size)):
            if key in parameters and int(parameters[key]) != value:
                raise ValueError(f"parameter {key}={parameters[key]} disagrees with sam_config ({value})")
        return info


class InferenceBackend(Protocol):
    """What the service core needs from the model server (:class:`TritonClient`, or a fake in tests)."""

    async def ready(self) -> bool: ...

    async def model_info(self) -> ModelInfo: ...

    async def embed(self, image: np.ndarray) -> np.ndarray: ...

    async def decode(
        self,
        embedding: np.ndarray,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        mask_input: np.ndarray,
        has_mask_input: np.ndarray,
        *,
        embedding_key: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def invalidate(self) -> None: ...

    async def close(self) -> None: ...


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """gRPC channel arguments for Triton: raised message limits, quick reconnects, keepalive."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["initial"]),
        ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["min"]),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["max"]),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]


def _status_name(error: InferenceServerException) -> str:
    status = error.status() or ""
    return status.rsplit(".", 1)[-1]  # "StatusCode.UNAVAILABLE" -> "UNAVAILABLE"


def _short(text: str | None) -> str:
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return first[:_MAX_ERROR_TEXT]


def map_triton_error(error: BaseException, model: str, timeout_s: float) -> ServiceError:
    """The :class:`ServiceError` for a failed call to ``model`` (see the module docstring)."""
    if isinstance(error, ServiceError):
        return error
    if isinstance(error, InferenceServerException):
        code, text = _status_name(error), error.message() or ""
    elif isinstance(error, grpc.aio.AioRpcError):
        code, text = error.code().name, error.details() or ""
    elif isinstance(error, TimeoutError):
        code, text = "DEADLINE_EXCEEDED", str(error)
    elif isinstance(error, ConnectionError | OSError):
        code, text = "UNAVAILABLE", str(error)
    else:
        code, text = "UNKNOWN", repr(error)
    lowered = text.lower()
    model_missing = (code == "NOT_FOUND" and "model" in lowered) or "not ready" in lowered
    if code in ("UNAVAILABLE", "CANCELLED") or model_missing:
        log.warning("triton %s unavailable: %s %s", model, code, _short(text))
        return Unavailable(
            "the inference backend is unavailable or still loading its models; retry with back-off",
            Reason.BACKEND_UNAVAILABLE,
            metadata={"model": model},
            retry_delay_s=RETRY_DELAY_S,
        )
    if code == "DEADLINE_EXCEEDED":
        return DeadlineExceeded(
            f"the inference backend did not answer within {timeout_s:g} s", metadata={"model": model}
        )
    if code == "INVALID_ARGUMENT":
        log.warning("triton %s rejected a request: %s", model, _short(text))
        return InvalidArgument(f"the model rejected the request: {_short(text)}", metadata={"model": model})
    incident_id = uuid.uuid4().hex[:16]
    log.error("triton %s failed (%s), incident id %s: %s", model, code, incident_id, text)
    return Internal(
        f"the model failed on this request; the server logged the details under incident id {incident_id}",
        metadata={"model": model, "incident_id": incident_id},
    )


# -- shared memory ---------------------------------------------------------------------------------


@dataclass
class _Region:
    name: str
    handle: Any
    byte_size: int
    registered: bool = False
    #: Cache key of the embedding now at offset 0 (``None``: unknown or not a cached embedding).
    holds: str | None = None


class SharedMemoryPool:
    """System shared memory regions of ``byte_size`` bytes, one per in-flight call.

    Regions are created on demand (at most ``max_regions``; callers beyond that wait), registered
    with Triton before their first use and after :meth:`invalidate`, and reused. Names carry the
    process id and a random token, so several gateways can share one Triton.
    """

    def __init__(self, client: triton_aio.InferenceServerClient, byte_size: int, max_regions: int = 16) -> None:
        if byte_size <= 0 or max_regions <= 0:
            raise ValueError("byte_size and max_regions must be positive")
        self._client = client
        self.byte_size = byte_size
        self._prefix = f"sam-gw-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._free: list[_Region] = []
        self._all: list[_Region] = []
        self._slots = asyncio.Semaphore(max_regions)

    def __len__(self) -> int:
        return len(self._all)

    async def acquire(self) -> _Region:
        """A free region, registered with Triton; give it back with :meth:`release`."""
        await self._slots.acquire()
        region = self._free.pop() if self._free else None
        try:
            if region is None:
                name = f"{self._prefix}-{len(self._all)}"
                handle = shm.create_shared_memory_region(name, "/" + name, self.byte_size, create_only=True)
                region = _Region(name, handle, self.byte_size)
                self._all.append(region)
            if not region.registered:
                await self._client.register_system_shared_memory(
                    region.name, "/" + region.name, region.byte_size, client_timeout=CONTROL_TIMEOUT_S
                )
                region.registered = True
        except BaseException:
            if region is not None:
                self._free.append(region)
            self._slots.release()
            raise
        return region

    def release(self, region: _Region) -> None:
        self._free.append(region)
        self._slots.release()

    def invalidate(self) -> None:
        """Forget registrations (Triton restarted): each region registers again on next use."""
        for region in self._all:
            region.registered = False

    async def _unregister(self, name: str) -> None:
        """Best effort. Triton refuses (INTERNAL) to unregister a region that a request it has just
        answered still holds for a moment: retry that briefly; give up at once on anything else
        (Triton may be gone already)."""
        for attempt in range(UNREGISTER_ATTEMPTS):
            try:
                await self._client.unregister_system_shared_memory(name, client_timeout=CONTROL_TIMEOUT_S)
                return
            except Exception as error:  # noqa: BLE001 - best effort
                in_use = isinstance(error, InferenceServerException) and error.status() == "StatusCode.INTERNAL"
                if not in_use or attempt + 1 == UNREGISTER_ATTEMPTS:
                    log.debug("unregistering shared memory %s failed: %s", name, error)
                    return
            await asyncio.sleep(0.05 * 2**attempt)

    async def close(self) -> None:
        """Unregister every region from Triton (best effort) and unlink them all."""
        for region in self._all:
            if region.registered:
                await self._unregister(region.name)
            try:
                shm.destroy_shared_memory_region(region.handle)
            except Exception as error:  # noqa: BLE001
                log.warning("destroying shared memory %s failed: %s", region.name, error)
        self._all.clear()
        self._free.clear()


def _decoder_output_shapes(prompt_sets: int, low_res_size: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes of the decoder's float32 outputs (``DECODER_OUTPUTS`` order): 4 low-res masks and 4
    scores per prompt set."""
    return (prompt_sets, 4, low_res_size, low_res_size), (prompt_sets, 4)


def _float32_nbytes(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) * 4


def _is_shared_memory_error(error: BaseException) -> bool:
    text = error.message() if isinstance(error, InferenceServerException) else str(error)
    return "shared memory" in (text or "").lower()


# -- the client -------------------------------------------------------------------------------------


class TritonClient:
    """Async client for ``sam_encoder`` and ``sam_decoder`` on one Triton server.

    Args:
        url: Triton gRPC endpoint ``HOST:PORT``.
        encoder_model, decoder_model: Triton model names.
        model_version: version to call ("" = Triton's latest).
        timeout_s: bound on one inference call.
        max_message_bytes: gRPC send/receive limit of the channel.
        use_shared_memory: pass embeddings through system shared memory (see the module docstring).
        observe: called after every inference as ``observe(model, ok, seconds)`` (metrics).
        headers: returns extra request metadata for each call (e.g. the W3C ``traceparent``); it is
            called inside the call's ``triton.infer`` client span (a child of the current span when
            that one records), so the ``traceparent`` names that span.
    """

    def __init__(
        self,
        url: str,
        *,
        encoder_model: str = "sam_encoder",
        decoder_model: str = "sam_decoder",
        model_version: str = "",
        timeout_s: float = 30.0,
        max_message_bytes: int = 64 << 20,
        use_shared_memory: bool = False,
        shared_memory_regions: int = 16,
        observe: Callable[[str, bool, float], None] | None = None,
        headers: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.url = url
        self.encoder_model = encoder_model
        self.decoder_model = decoder_model
        self.model_version = model_version
        self.timeout_s = timeout_s
        self.use_shared_memory = use_shared_memory
        self._shared_memory_regions = shared_memory_regions
        self._observe = observe
        self._headers = headers
        self._client = triton_aio.InferenceServerClient(url, channel_args=channel_options(max_message_bytes))
        self._pool: SharedMemoryPool | None = None
        self._info: ModelInfo | None = None

    # -- control ------------------------------------------------------------------------------------

    async def ready(self) -> bool:
        """True if Triton answers and both models are ready now; never raises."""
        try:
            if not await self._client.is_server_ready(client_timeout=CONTROL_TIMEOUT_S):
                return False
            for model in (self.encoder_model, self.decoder_model):
                if not await self._client.is_model_ready(model, self.model_version, client_timeout=CONTROL_TIMEOUT_S):
                    return False
            return True
        except Exception as error:  # noqa: BLE001 - any failure means "not ready"
            log.debug("triton readiness check failed: %s", error)
            return False

    async def model_info(self) -> ModelInfo:
        """Read the model description from both models' configs (cached until :meth:`invalidate`).

        Raises:
            Unavailable: Triton is unreachable or the models are not loaded.
            Internal: the configs lack the parameters or encoder and decoder disagree.
        """
        if self._info is not None:
            return self._info
        infos = []
        for model in (self.encoder_model, self.decoder_model):
            try:
                response = await self._client.get_model_config(
                    model, self.model_version, as_json=True, client_timeout=CONTROL_TIMEOUT_S
                )
            except Exception as error:  # noqa: BLE001
                raise map_triton_error(error, model, CONTROL_TIMEOUT_S) from error
            parameters = {
                key: value.get("string_value", "")
                for key, value in response.get("config", {}).get("parameters", {}).items()
            }
            try:
                infos.append(ModelInfo.from_parameters(parameters))
            except (ValueError, TypeError, KeyError) as error:
                log.error("triton model %s has no usable SAM description: %s", model, error)
                raise Internal("the inference backend serves a model this gateway cannot describe") from error
        if infos[0] != infos[1]:
            log.error("encoder and decoder describe different models: %s vs %s", infos[0], infos[1])
            raise Internal("the inference backend serves an encoder and a decoder of different models")
        self._info = infos[0]
        return self._info

    def invalidate(self) -> None:
        """Triton went away: forget the model description and shared memory registrations."""
        self._info = None
        if self._pool is not None:
            self._pool.invalidate()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self._client.close()

    # -- inference ------------------------------------------------------------------------------------

    async def _infer(
        self,
        model: str,
        inputs: list[InferInput],
        outputs: list[InferRequestedOutput],
        attributes: Mapping[str, AttributeValue],
    ) -> Any:
        """One inference call: a client span (``attributes`` added), the headers, the metrics."""
        with child_span(
            "triton.infer", {"triton.model": model, "triton.model_version": self.model_version, **attributes},
            kind=SpanKind.CLIENT,
        ):  # fmt: skip
            headers = self._headers() if self._headers is not None else None
            start = time.perf_counter()
            ok = False
            try:
                result = await self._client.infer(
                    model,
                    inputs,
                    model_version=self.model_version,
                    outputs=outputs,
                    client_timeout=self.timeout_s,
                    headers=headers,
                )
                ok = True
                return result
            finally:
                if self._observe is not None:
                    self._observe(model, ok, time.perf_counter() - start)

    async def _shared_pool(self) -> SharedMemoryPool | None:
        if not self.use_shared_memory:
            return None
        if self._pool is None:
            info = await self.model_info()
            outputs = _decoder_output_shapes(SHARED_OUTPUT_SETS, info.low_res_size)
            size = info.embedding_nbytes + sum(_float32_nbytes(shape) for shape in outputs)
            self._pool = SharedMemoryPool(self._client, size, self._shared_memory_regions)
        return self._pool

    async def _with_region(self, model: str, run: Callable[[_Region | None], Any]) -> Any:
        """``await run(region)`` with a pooled region (or ``None`` without shared memory).

        Retries once after re-registering when Triton lost the registration, and falls back to
        plain tensors for good when Triton cannot use this host's shared memory.
        """
        pool = await self._shared_pool()
        if pool is None:
            return await run(None)
        for attempt in (1, 2):
            try:
                region = await pool.acquire()
            except (InferenceServerException, shm.SharedMemoryException) as error:
                if isinstance(error, InferenceServerException) and _status_name(error) in (
                    "UNAVAILABLE",
                    "DEADLINE_EXCEEDED",
                ):
                    raise map_triton_error(error, model, CONTROL_TIMEOUT_S) from error
                text = error.message() if isinstance(error, InferenceServerException) else str(error)
                log.warning("shared memory with Triton failed (%s); sending embeddings in requests", _short(text))
                self.use_shared_memory = False
                return await run(None)
            try:
                return await run(region)
            except InferenceServerException as error:
                if attempt == 1 and _is_shared_memory_error(error):
                    log.info("Triton lost the shared memory registrations (restarted?); registering again")
                    pool.invalidate()
                    continue
                raise
            finally:
                pool.release(region)
        raise AssertionError("unreachable")  # pragma: no cover

    async def embed(self, image: np.ndarray) -> np.ndarray:
        """Embedding ``float32 [256, g, g]`` of a resized ``uint8 [h, w, 3]`` image."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"embed needs a resized uint8 [h, w, 3] image, got {image.dtype} {list(image.shape)}")
        batch = np.ascontiguousarray(image)[None]
        tensor = InferInput(ENCODER_INPUT, list(batch.shape), "UINT8")
        tensor.set_data_from_numpy(batch)

        async def run(region: _Region | None) -> np.ndarray:
            output = InferRequestedOutput(ENCODER_OUTPUT)
            if region is not None:
                region.holds = None  # the encoder overwrites the embedding slot
                output.set_shared_memory(region.name, region.byte_size)
            attributes = {"sam.resized.height_px": image.shape[0], "sam.resized.width_px": image.shape[1],
                          "triton.shared_memory": region is not None}  # fmt: skip
            result = await self._infer(self.encoder_model, [tensor], [output], attributes)
            if region is None:
                array = result.as_numpy(ENCODER_OUTPUT)
            else:
                shape = list(result.get_output(ENCODER_OUTPUT).shape)
                # Copy out: the region is reused by the next call.
                array = np.array(shm.get_contents_as_numpy(region.handle, np.float32, shape), copy=True)
            if array is None or array.ndim != 4 or array.shape[0] != 1:
                raise Internal("the encoder returned no embedding of the expected shape")
            return np.asarray(array[0], dtype=np.float32)

        try:
            return await self._with_region(self.encoder_model, run)  # type: ignore[no-any-return]
        except ServiceError:
            raise
        except Exception as error:  # noqa: BLE001 - mapped at this boundary
            raise map_triton_error(error, self.encoder_model, self.timeout_s) from error

    async def decode(
        self,
        embedding: np.ndarray,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        mask_input: np.ndarray,
        has_mask_input: np.ndarray,
        *,
        embedding_key: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run the decoder on one embedding and B packed prompt sets.

        Args:
            embedding: ``float32 [256, g, g]`` (or ``[1, 256, g, g]``).
            point_coords: ``float32 [B, N, 2]`` resized-frame pixels; point_labels ``int32 [B, N]``.
            mask_input: ``float32 [B, 1, 4g, 4g]`` logits; has_mask_input ``float32 [B]`` (1 uses it).
            embedding_key: names ``embedding`` for good (model id and image id of a cached one):
                a shared-memory region that already holds it is not written again.

        Returns:
            ``(low_res_logits float32 [B, 4, 4g, 4g], iou_predictions float32 [B, 4])``, all four
            mask tokens in token order.
        """
        embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        if embedding.ndim == 3:
            embedding = embedding[None]
        arrays = {
            "point_coords": (np.ascontiguousarray(point_coords, dtype=np.float32), "FP32"),
            "point_labels": (np.ascontiguousarray(point_labels, dtype=np.int32), "INT32"),
            "mask_input": (np.ascontiguousarray(mask_input, dtype=np.float32), "FP32"),
            "has_mask_input": (np.ascontiguousarray(has_mask_input, dtype=np.float32), "FP32"),
        }
        prompt_tensors = []
        for name, (array, dtype) in arrays.items():
            tensor = InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            prompt_tensors.append(tensor)
        batch = int(point_coords.shape[0])
        output_shapes = _decoder_output_shapes(batch, 4 * embedding.shape[-1])
        # In a shared region the outputs follow the embedding: [low-res masks | IoU predictions].
        output_sizes = [_float32_nbytes(shape) for shape in output_shapes]
        output_offsets = [embedding.nbytes, embedding.nbytes + output_sizes[0]]
        outputs_end = output_offsets[1] + output_sizes[1]

        async def run(region: _Region | None) -> tuple[np.ndarray, np.ndarray]:
            tensor = InferInput(DECODER_INPUTS[0], list(embedding.shape), "FP32")
            outputs = [InferRequestedOutput(name) for name in DECODER_OUTPUTS]
            shared = region is not None and embedding.nbytes <= region.byte_size
            output_region: _Region | None = None
            if region is None or not shared:
                tensor.set_data_from_numpy(embedding)
            else:
                if embedding_key is None or region.holds != embedding_key:
                    region.holds = None  # until the copy is complete
                    shm.set_shared_memory_region(region.handle, [embedding])
                    region.holds = embedding_key
                tensor.set_shared_memory(region.name, embedding.nbytes)
                if outputs_end <= region.byte_size:
                    output_region = region
                    for output, size, offset in zip(outputs, output_sizes, output_offsets, strict=True):
                        output.set_shared_memory(region.name, size, offset)
            attributes = {"sam.prompt_sets": batch, "sam.points_per_set": int(point_coords.shape[1]),
                          "triton.shared_memory": shared}  # fmt: skip
            result = await self._infer(self.decoder_model, [tensor, *prompt_tensors], outputs, attributes)
            if output_region is not None:
                for name, shape in zip(DECODER_OUTPUTS, output_shapes, strict=True):
                    described = result.get_output(name)
                    if described is None or tuple(described.shape) != shape:
                        raise Internal("the decoder returned outputs of an unexpected shape")
                # Copy out: the region is reused by the next call.
                handle = output_region.handle
                low_res, iou = (
                    np.array(shm.get_contents_as_numpy(handle, np.float32, list(shape), offset), copy=True)
                    for shape, offset in zip(output_shapes, output_offsets, strict=True)
                )
                return low_res, iou
            low_res, iou = (result.as_numpy(name) for name in DECODER_OUTPUTS)
            if low_res is None or iou is None or low_res.shape[:2] != (batch, 4) or iou.shape != (batch, 4):
                raise Internal("the decoder returned outputs of an unexpected shape")
            return low_res, iou

        try:
            return await self._with_region(self.decoder_model, run)  # type: ignore[no-any-return]
        except ServiceError:
            raise
        except Exception as error:  # noqa: BLE001 - mapped at this boundary
            raise map_triton_error(error, self.decoder_model, self.timeout_s) from error

    async def inference_count(self, model: str) -> int:
        """Triton's count of inferences ``model`` ran (a test and benchmark probe)."""
        stats = await self._client.get_inference_statistics(model, as_json=True, client_timeout=CONTROL_TIMEOUT_S)
        return sum(int(s.get("inference_count", 0)) for s in stats.get("model_stats", []))
