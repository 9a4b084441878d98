"""Mask decoding: COCO compressed RLE strings, 1-bit PNGs and raw tensors to numpy.

RLE uses pycocotools when it is installed and this module's own decoder of the same format
otherwise (the two are tested to agree).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage

from sam_client._proto import segment_anything_pb2 as pb

try:  # optional: faster, and the reference implementation
    from pycocotools import mask as _coco_mask
except ImportError:  # pragma: no cover - depends on the environment
    _coco_mask = None


def rle_counts(counts: str | bytes) -> list[int]:
    """Run lengths of a COCO compressed RLE counts string (pycocotools' ``rleFrString``)."""
    data = counts.encode("ascii") if isinstance(counts, str) else counts
    runs: list[int] = []
    p = 0
    while p < len(data):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(data):
                raise ValueError("truncated COCO RLE counts string")
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def decode_rle_numpy(height: int, width: int, counts: str | bytes) -> np.ndarray:
    """``bool [height, width]`` mask of a COCO compressed RLE (no pycocotools needed)."""
    runs = np.asarray(rle_counts(counts), dtype=np.int64)
    if (runs < 0).any() or runs.sum() != height * width:
        raise ValueError(f"RLE counts cover {int(runs.sum())} pixels, expected {height}x{width}={height * width}")
    values = (np.arange(runs.size) % 2).astype(bool)
    flat = np.repeat(values, runs)
    return flat.reshape((height, width), order="F")


def decode_rle(height: int, width: int, counts: str | bytes) -> np.ndarray:
    """``bool [height, width]`` mask of a COCO compressed RLE."""
    if _coco_mask is not None:
        raw = counts.encode("ascii") if isinstance(counts, str) else counts
        return _coco_mask.decode({"size": [height, width], "counts": raw}).astype(bool)
    return decode_rle_numpy(height, width, counts)


def decode_png(data: bytes) -> np.ndarray:
    """``bool [H, W]`` mask of a grayscale PNG (nonzero = object)."""
    with PILImage.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("L")) > 0


def encode_png(mask: np.ndarray) -> bytes:
    """A 1-bit PNG of a ``bool [H, W]`` mask (white = object)."""
    buffer = io.BytesIO()
    PILImage.fromarray(np.asarray(mask, dtype=bool)).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


_TENSOR_DTYPES: dict[int, np.dtype] = {pb.Tensor.FLOAT32: np.dtype("<f4"), pb.Tensor.FLOAT16: np.dtype("<f2")}


def decode_tensor(tensor: pb.Tensor) -> np.ndarray:
    """A ``Tensor`` message as a numpy array (float32 or float16, C order)."""
    dtype = _TENSOR_DTYPES.get(tensor.data_type)
    if dtype is None:
        raise ValueError(f"tensor has unsupported data type {tensor.data_type}")
    return np.frombuffer(tensor.data, dtype=dtype).reshape(tuple(tensor.shape)).astype(dtype.newbyteorder("="))


def encode_tensor(array: np.ndarray) -> pb.Tensor:
    """A float32 ``Tensor`` message of ``array`` (for mask-logit prompts)."""
    data = np.ascontiguousarray(array, dtype="<f4")
    if not np.isfinite(data).all():
        raise ValueError("mask logits must be finite")
    return pb.Tensor(data_type=pb.Tensor.FLOAT32, shape=list(data.shape), data=data.tobytes())
