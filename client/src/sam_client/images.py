"""Client-side image handling: turn what the caller has into the API's ``Image`` and its content id.

Accepted inputs: a path (``str`` or ``os.PathLike``) to a PNG/JPEG/WebP file, the file's ``bytes``,
a ``numpy`` ``uint8`` array of shape ``HxWx3`` (RGB) or a ``PIL.Image.Image``. Files and bytes are
sent exactly as they are (the server decodes them, applying EXIF orientation); arrays and PIL
images are sent as raw RGB. The id is computed the same way as the server does (lowercase SHA-256
hex of the bytes as sent; raw RGB hashes the prefix ``raw-rgb8:{W}x{H}:`` first), so the client
knows an image's id without asking.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from PIL import Image as PILImage

from sam_client._proto import segment_anything_pb2 as pb

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, PILImage.Image]


def image_id(content: bytes, raw_size: tuple[int, int] | None = None) -> str:
    """The image's content id as the server computes it. ``raw_size=(width, height)`` for raw RGB."""
    digest = hashlib.sha256()
    if raw_size is not None:
        width, height = raw_size
        digest.update(f"raw-rgb8:{width}x{height}:".encode())
    digest.update(content)
    return digest.hexdigest()


@dataclass(frozen=True)
class PreparedImage:
    """An image ready to send: the ``Image`` message and its content id."""

    message: pb.Image
    image_id: str


def prepare_image(image: Any) -> PreparedImage:
    """Normalize ``image`` (see the module docstring). Raises ``FileNotFoundError`` for a missing
    path and ``TypeError``/``ValueError`` for anything else that cannot be sent."""
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"image file not found: {path}")
        with open(path, "rb") as f:
            image = f.read()
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise ValueError("image bytes are empty; pass a PNG, JPEG or WebP file's contents")
        return PreparedImage(pb.Image(encoded=data), image_id(data))
    if isinstance(image, PILImage.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"a numpy image must be uint8 of shape HxWx3 (RGB), got {image.dtype} {tuple(image.shape)}"
            )
        height, width = int(image.shape[0]), int(image.shape[1])
        if height == 0 or width == 0:
            raise ValueError(f"a numpy image must not be empty, got shape {tuple(image.shape)}")
        rgb = np.ascontiguousarray(image).tobytes()
        raw = pb.RawImage(width_px=width, height_px=height, rgb=rgb)
        return PreparedImage(pb.Image(raw=raw), image_id(rgb, (width, height)))
    raise TypeError(
        f"unsupported image type {type(image).__name__}: pass a file path, encoded bytes, "
        "a uint8 HxWx3 numpy array or a PIL image"
    )


def load_rgb(image: Any) -> np.ndarray:
    """``uint8 HxWx3`` RGB pixels of ``image`` as the server sees them (EXIF orientation applied)."""
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, PILImage.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, (bytes, bytearray, memoryview)):
        import io

        source: Any = io.BytesIO(bytes(image))
    else:
        source = os.fspath(image)
    with PILImage.open(source) as opened:
        from PIL import ImageOps

        return np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
