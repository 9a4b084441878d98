"""What the sync and async clients share: channel settings, retry policy, request building and
response parsing. No I/O happens here."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from sam_client import _wellknown
from sam_client import masks as mask_codec
from sam_client._proto import segment_anything_pb2 as pb
from sam_client.errors import SamError
from sam_client.types import (
    Box,
    EmbedResult,
    Encoding,
    GeneratedMask,
    Mask,
    Mode,
    ModelInfo,
    Point,
    PromptSet,
    SegmentResult,
)

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_TIMEOUT_S = 30.0
#: Messages over gRPC's 4 MiB default are normal here (a float32 embedding is exactly 4 MiB).
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

SERVICE = pb.DESCRIPTOR.services_by_name["SegmentAnythingService"]


def method_path(name: str) -> str:
    """``/segmentanything.v1.SegmentAnythingService/<name>``, from the service descriptor."""
    return f"/{SERVICE.full_name}/{SERVICE.methods_by_name[name].name}"


def response_class(name: str) -> Any:
    return getattr(pb, SERVICE.methods_by_name[name].output_type.name)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of UNAVAILABLE (only): exponential back-off with full jitter, never past the deadline.

    Attempt ``n`` (1-based) that failed with UNAVAILABLE is followed by a pause drawn uniformly from
    ``[0, min(max_backoff_s, initial_backoff_s * multiplier**(n-1))]``, at least the server's
    ``RetryInfo`` delay if it sent one. If the pause would end after the call's deadline, the
    UNAVAILABLE error is raised instead. ``max_attempts`` counts the first try.
    """

    max_attempts: int = 6
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("back-off times must be >= 0 and the multiplier >= 1")

    def pause_s(self, attempt: int, error: SamError, rng: random.Random) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None if ``error`` is final."""
        if error.code != grpc.StatusCode.UNAVAILABLE or attempt >= self.max_attempts:
            return None
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        pause = rng.uniform(0.0, ceiling)
        if error.retry_delay_s is not None:
            pause = max(pause, error.retry_delay_s)
        return pause


NO_RETRY = RetryPolicy(max_attempts=1)


def channel_options(max_message_bytes: int, extra: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """Channel arguments: raised message limits, keepalive, quick reconnects (so retries of a
    server that was down can succeed soon after it is back). ``extra`` overrides."""
    options: dict[str, Any] = {
        "grpc.max_receive_message_length": max_message_bytes,
        "grpc.max_send_message_length": max_message_bytes,
        # Ping a silent connection during a call to detect a dead peer (or a middlebox that dropped
        # it). Not more often than gRPC servers accept by default (one ping per 5 minutes without
        # data; more frequent pings earn "too_many_pings" GOAWAYs). Idle channels do not ping.
        "grpc.keepalive_time_ms": 300_000,
        "grpc.keepalive_timeout_ms": 20_000,
        "grpc.keepalive_permit_without_calls": 0,
        "grpc.initial_reconnect_backoff_ms": 200,
        "grpc.min_reconnect_backoff_ms": 200,
        "grpc.max_reconnect_backoff_ms": 2_000,
        "grpc.primary_user_agent": "segment-anything-client/0.1",
    }
    options.update(dict(extra))
    return list(options.items())


def channel_credentials(
    tls: bool, root_certificates: bytes | str | os.PathLike[str] | None
) -> grpc.ChannelCredentials | None:
    """TLS credentials (system roots, or the given PEM bytes / file), or None for plaintext."""
    if not tls and root_certificates is None:
        return None
    if isinstance(root_certificates, (str, os.PathLike)):
        with open(root_certificates, "rb") as f:
            root_certificates = f.read()
    return grpc.ssl_channel_credentials(root_certificates=root_certificates)


def open_channel(
    channels: Any,
    address: str,
    tls: bool,
    root_certificates: bytes | str | os.PathLike[str] | None,
    max_message_bytes: int,
    options: Sequence[tuple[str, Any]],
) -> Any:
    """A channel to ``address`` from ``channels`` (the module ``grpc`` or ``grpc.aio``): TLS when
    asked for (see :func:`channel_credentials`), with :func:`channel_options`."""
    arguments = channel_options(max_message_bytes, options)
    credentials = channel_credentials(tls, root_certificates)
    if credentials is None:
        return channels.insecure_channel(address, options=arguments)
    return channels.secure_channel(address, credentials, options=arguments)


def bind_methods(channel: Any) -> tuple[dict[str, Any], Any]:
    """The service's methods on ``channel`` (sync or asyncio) by name, and the health Check method."""
    calls = {}
    for name in SERVICE.methods_by_name:
        factory = channel.unary_stream if name == "GenerateMasks" else channel.unary_unary
        calls[name] = factory(
            method_path(name),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class(name).FromString,
        )
    health = channel.unary_unary(
        _wellknown.HEALTH_CHECK_METHOD,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=_wellknown.HealthCheckResponse.FromString,
    )
    return calls, health


def call_metadata(token: str | None, extra: Iterable[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
    metadata = list(extra)
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    return tuple(metadata)


class ClientBase:
    """The arguments, settings and channel the sync and asyncio clients share (documented on
    :class:`sam_client.SamClient`). A subclass names its gRPC module (``grpc`` or ``grpc.aio``)
    in ``_channels``."""

    _channels: Any = grpc

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        tls: bool = False,
        root_certificates: bytes | str | os.PathLike[str] | None = None,
        token: str | None = None,
        reuse_image_ids: bool = True,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        options: Sequence[tuple[str, Any]] = (),
        metadata: Iterable[tuple[str, str]] = (),
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
        self.address = address
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.reuse_image_ids = reuse_image_ids
        self._metadata = call_metadata(token, metadata)
        self._rng = random.Random()
        self._channel = open_channel(self._channels, address, tls, root_certificates, max_message_bytes, options)
        self._calls, self._health = bind_methods(self._channel)


# -- requests ---------------------------------------------------------------------------------------

_MODES = {"auto": pb.SegmentRequest.AUTO, "multi": pb.SegmentRequest.MULTI, "single": pb.SegmentRequest.SINGLE}
_ENCODINGS = {"rle": pb.Mask.RLE, "png": pb.Mask.PNG, "logits": pb.Mask.LOW_RES_LOGITS}
_LABELS = {
    "1": True,
    "fg": True,
    "foreground": True,
    "pos": True,
    "0": False,
    "bg": False,
    "background": False,
    "neg": False,
}


def as_point(value: Any) -> Point:
    """A :class:`Point` from a Point or a tuple ``(x, y)`` / ``(x, y, label)``; label 1/True/"fg"
    is foreground, 0/False/"bg" background (SAM's 1/0 convention)."""
    if isinstance(value, Point):
        return value
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"a point must be a Point or a tuple (x, y[, label]), got {value!r}") from None
    if len(items) not in (2, 3):
        raise ValueError(f"a point must be (x, y) or (x, y, label), got {value!r}")
    foreground = True
    if len(items) == 3:
        label = items[2]
        key = str(int(label)) if isinstance(label, (bool, int, np.integer)) else str(label).lower()
        if key not in _LABELS:
            raise ValueError(f"point label must be 1 (foreground) or 0 (background), got {label!r}")
        foreground = _LABELS[key]
    return Point(float(items[0]), float(items[1]), foreground)


def as_box(value: Any) -> Box:
    if isinstance(value, Box):
        return value
    items = [float(v) for v in value]
    if len(items) != 4:
        raise ValueError(f"a box must be (x_min, y_min, x_max, y_max), got {value!r}")
    return Box(*items)


def prompt_set_message(prompts: PromptSet) -> pb.PromptSet:
    message = pb.PromptSet()
    for point in prompts.points:
        label = pb.Point.FOREGROUND if point.foreground else pb.Point.BACKGROUND
        message.points.add(x=point.x, y=point.y, label=label)
    if prompts.box is not None:
        b = prompts.box
        message.box.CopyFrom(pb.Box(x_min=b.x_min, y_min=b.y_min, x_max=b.x_max, y_max=b.y_max))
    if prompts.mask_logits is not None and prompts.mask_id is not None:
        raise ValueError("give either mask_logits or mask_id for one prompt set, not both")
    if prompts.mask_logits is not None:
        message.mask.logits.CopyFrom(mask_codec.encode_tensor(prompts.mask_logits))
    elif prompts.mask_id is not None:
        message.mask.mask_id = prompts.mask_id
    return message


def segment_request(
    *,
    points: Iterable[Any] | None,
    box: Any,
    mask_logits: np.ndarray | None,
    mask_id: str | None,
    prompt_sets: Iterable[PromptSet] | None,
    mode: Mode,
    encoding: Encoding,
) -> pb.SegmentRequest:
    """The SegmentRequest without its image source. Either the single-set keywords (points, box,
    mask_logits, mask_id) or ``prompt_sets``, not both."""
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {sorted(_MODES)}, got {mode!r}")
    if encoding not in _ENCODINGS:
        raise ValueError(f"encoding must be one of {sorted(_ENCODINGS)}, got {encoding!r}")
    single = points is not None or box is not None or mask_logits is not None or mask_id is not None
    if prompt_sets is not None and single:
        raise ValueError("pass prompt_sets, or points/box/mask_logits/mask_id for one set, not both")
    if prompt_sets is None:
        if not single:
            raise ValueError("give at least one prompt: points=[(x, y)], box=(x0, y0, x1, y1) or prompt_sets=[...]")
        sets = [
            PromptSet(
                points=tuple(as_point(p) for p in (points or ())),
                box=as_box(box) if box is not None else None,
                mask_logits=mask_logits,
                mask_id=mask_id,
            )
        ]
    else:
        sets = list(prompt_sets)
        if not sets:
            raise ValueError("prompt_sets is empty; give at least one PromptSet")
    return pb.SegmentRequest(
        prompt_sets=[prompt_set_message(s) for s in sets],
        multimask_mode=_MODES[mode],
        mask_encoding=_ENCODINGS[encoding],
    )


# -- responses --------------------------------------------------------------------------------------


def _box(message: pb.Box) -> Box:
    return Box(message.x_min, message.y_min, message.x_max, message.y_max)


def parse_mask(message: pb.Mask, height: int, width: int) -> Mask:
    kind = message.WhichOneof("data")
    common: dict[str, Any] = dict(
        score=message.score, area_px=message.area_px, bbox=_box(message.bbox), mask_id=message.mask_id
    )
    if kind == "rle":
        rle = message.rle
        mask = mask_codec.decode_rle(rle.height_px or height, rle.width_px or width, rle.counts)
        return Mask(**common, mask=mask, rle_counts=rle.counts)
    if kind == "png":
        return Mask(**common, mask=mask_codec.decode_png(message.png), png=message.png)
    if kind == "low_res_logits":
        return Mask(**common, low_res_logits=mask_codec.decode_tensor(message.low_res_logits))
    return Mask(**common)


def parse_segment(response: pb.SegmentResponse) -> SegmentResult:
    height, width = response.original_size.height_px, response.original_size.width_px
    results = tuple(tuple(parse_mask(m, height, width) for m in r.masks) for r in response.results)
    return SegmentResult(response.image_id, height, width, response.cached, results)


def parse_embed(response: pb.EmbedImageResponse) -> EmbedResult:
    embedding = mask_codec.decode_tensor(response.embedding) if response.HasField("embedding") else None
    return EmbedResult(
        image_id=response.image_id,
        original_size=(response.original_size.height_px, response.original_size.width_px),
        resized_size=(response.resized_size.height_px, response.resized_size.width_px),
        cached=response.cached,
        embedding=embedding,
    )


def parse_model_info(response: pb.GetModelInfoResponse) -> ModelInfo:
    return ModelInfo(
        name=response.name,
        version=response.version,
        image_size_px=response.image_size_px,
        embedding_shape=tuple(response.embedding_shape),
        low_res_mask_size_px=response.low_res_mask_size_px,
        mask_threshold=response.mask_threshold,
        cache_float16=response.cache_float16,
    )


def parse_generated(message: pb.GeneratedMask, height: int, width: int) -> GeneratedMask:
    p = message.input_point
    return GeneratedMask(
        mask=parse_mask(message.mask, height, width),
        stability_score=message.stability_score,
        input_point=Point(p.x, p.y, p.label != pb.Point.BACKGROUND),
        crop_box=_box(message.crop_box),
    )


EMBEDDING_TYPES = {None: pb.Tensor.DATA_TYPE_UNSPECIFIED, "float32": pb.Tensor.FLOAT32, "float16": pb.Tensor.FLOAT16}
