"""Helpers for the end-to-end gateway tests: test images, requests, and reading error details."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import grpc
import numpy as np
import pycocotools.mask as mask_utils
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from segmentanything.v1 import segment_anything_pb2 as pb
from segmentanything.v1 import segment_anything_pb2_grpc as pb_grpc

FG = pb.Point.FOREGROUND
BG = pb.Point.BACKGROUND


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A ``uint8 [H, W, 3]`` RGB image with smooth gradients, a few solid shapes and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [xx / max(width - 1, 1) * 200, yy / max(height - 1, 1) * 180, (xx + yy) / (height + width) * 120], axis=-1
    )
    for _ in range(4):
        colour = rng.integers(0, 256, 3)
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.08, 0.25) * height, rng.uniform(0.08, 0.25) * width
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        image[inside] = colour
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def stub(channel: grpc.Channel) -> pb_grpc.SegmentAnythingServiceStub:
    return pb_grpc.SegmentAnythingServiceStub(channel)


def point_set(
    *points: tuple[float, float, int],
    box: tuple[float, float, float, float] | None = None,
    mask: pb.MaskPrompt | None = None,
) -> pb.PromptSet:
    prompt = pb.PromptSet(points=[pb.Point(x=x, y=y, label=label) for x, y, label in points])
    if box is not None:
        prompt.box.CopyFrom(pb.Box(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]))
    if mask is not None:
        prompt.mask.CopyFrom(mask)
    return prompt


def logits_tensor(logits: np.ndarray, dtype: str = "float32") -> pb.Tensor:
    data_type = pb.Tensor.FLOAT16 if dtype == "float16" else pb.Tensor.FLOAT32
    array = np.ascontiguousarray(logits, dtype="<f2" if dtype == "float16" else "<f4")
    return pb.Tensor(data_type=data_type, shape=list(array.shape), data=array.tobytes())


def tensor_array(tensor: pb.Tensor) -> np.ndarray:
    dtype = "<f2" if tensor.data_type == pb.Tensor.FLOAT16 else "<f4"
    return np.frombuffer(tensor.data, dtype=dtype).reshape(tuple(tensor.shape)).astype(np.float32)


def mask_pixels(mask: pb.Mask) -> np.ndarray:
    """The ``bool [H, W]`` pixels of an RLE or PNG mask."""
    if mask.HasField("rle"):
        rle = {"size": [mask.rle.height_px, mask.rle.width_px], "counts": mask.rle.counts.encode("ascii")}
        return np.asarray(mask_utils.decode(rle), dtype=bool)
    if mask.HasField("png"):
        with Image.open(io.BytesIO(mask.png)) as image:
            return np.asarray(image.convert("L")) > 0
    raise ValueError("mask carries no pixels (LOW_RES_LOGITS?)")


@dataclass
class ErrorDetails:
    code: grpc.StatusCode
    message: str
    reason: str
    metadata: dict[str, str]
    fields: dict[str, str]
    retry_delay_s: float | None


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """Code, message and the ``google.rpc`` details of a failed call."""
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status details on {error.code()}: {error.details()}"
    reason, metadata, fields, retry = "", {}, {}, None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = {v.field: v.description for v in bad.field_violations}
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info_retry = error_details_pb2.RetryInfo()
            detail.Unpack(info_retry)
            retry = info_retry.retry_delay.ToNanoseconds() / 1e9
    return ErrorDetails(error.code(), error.details() or "", reason, metadata, fields, retry)


def inference_count(triton_url: str, model: str) -> int:
    """How many inferences Triton ran for ``model`` so far."""
    import tritonclient.grpc as triton_grpc

    client = triton_grpc.InferenceServerClient(triton_url)
    try:
        stats = client.get_inference_statistics(model, as_json=True)
    finally:
        client.close()
    return sum(int(s.get("inference_count", 0)) for s in stats.get("model_stats", []))


def settled_inference_count(triton_url: str, model: str, quiet_s: float = 0.3, timeout_s: float = 20.0) -> int:
    """``inference_count`` once it has held still for ``quiet_s`` (polled; at most ``timeout_s``).

    A count read right after a reply can still move: a Triton backend may report an inference's
    statistics after it has sent the response, and a call an earlier test left running may still
    finish. (A fresh-clone CI run once saw the encoder count move by one after the reads; 40 tries
    on an idle machine did not.)
    """
    deadline = time.monotonic() + timeout_s
    last, since = inference_count(triton_url, model), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.05)
        now = inference_count(triton_url, model)
        if now != last:
            last, since = now, time.monotonic()
    return last


def metric(metrics_text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """A sample's value from Prometheus text (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return float(sample.value)
    return 0.0
