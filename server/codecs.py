"""Bytes in, arrays out (and back): images, masks and tensors as the API carries them.

Everything here is transport-neutral and raises :class:`server.errors.InvalidArgument` with a
message that says what to send instead, and a field violation naming ``field`` (the request path
of the bytes, passed in by the caller).

- Images: PNG, JPEG or WebP bytes (Pillow), or raw RGB (width, height, ``H*W*3`` bytes), to
  ``uint8 [H, W, 3]`` RGB. JPEG/WebP EXIF orientation is applied, so pixel coordinates refer to the
  image as viewers show it. Size limits are checked before any pixel is decoded.
- Image ids: sha256 of the bytes as sent (raw RGB also hashes its width and height).
- Masks: COCO RLE (pycocotools' compressed counts string), PNG (1-bit or 8-bit grayscale), and
  raw little-endian tensors (low-res logits, embeddings) as bytes plus a shape.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image, ImageOps, UnidentifiedImageError

from server.errors import FieldViolation, InvalidArgument, Reason

SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})

TensorDtype = Literal["float32", "float16"]
_WIRE_DTYPES: dict[str, np.dtype] = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def _invalid(message: str, reason: str, field: str, **metadata: str) -> InvalidArgument:
    return InvalidArgument(message, reason, field_violations=[FieldViolation(field, message)], metadata=metadata)


# -- images ---------------------------------------------------------------------------------------


def image_id(content: bytes, raw_size: tuple[int, int] | None = None) -> str:
    """Content id of an image: lowercase sha256 hex of the bytes exactly as sent.

    For raw RGB pass ``raw_size=(width, height)``: it is hashed too (the same bytes with another
    shape are another image), with a prefix that cannot collide with an encoded file's bytes.
    The id does not depend on the server, so it is stable across replicas and restarts.
    """
    digest = hashlib.sha256()
    if raw_size is not None:
        width, height = raw_size
        digest.update(f"raw-rgb8:{width}x{height}:".encode())
    digest.update(content)
    return digest.hexdigest()


def _check_pixels(width: int, height: int, max_pixels: int, field: str) -> None:
    if width * height > max_pixels:
        raise _invalid(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} pixels; "
            "downscale it before sending",
            Reason.IMAGE_TOO_LARGE,
            field,
            limit_px=str(max_pixels),
        )


def _check_bytes(size: int, max_bytes: int, field: str) -> None:
    if size > max_bytes:
        raise _invalid(
            f"image is {size} bytes, over the limit of {max_bytes} bytes; send a smaller or compressed image",
            Reason.IMAGE_TOO_LARGE,
            field,
            limit_bytes=str(max_bytes),
        )


def decode_image(data: bytes, *, max_pixels: int, max_bytes: int, field: str = "image.encoded") -> np.ndarray:
    """Decode PNG, JPEG or WebP bytes to ``uint8 [H, W, 3]`` RGB (C-contiguous).

    Alpha is dropped, palette and grayscale images are expanded to RGB, an animation yields its
    first frame, and EXIF orientation is applied.

    Raises:
        InvalidArgument: empty or malformed bytes or an unsupported format (``IMAGE_DECODE_FAILED``);
            more than ``max_bytes`` bytes or ``max_pixels`` pixels (``IMAGE_TOO_LARGE``, checked from
            the header before decoding, which also guards against decompression bombs).
    """
    if not data:
        raise _invalid("image bytes are empty; send a PNG, JPEG or WebP file", Reason.IMAGE_DECODE_FAILED, field)
    _check_bytes(len(data), max_bytes, field)
    try:
        with warnings.catch_warnings():
            # Our own pixel limit applies; Pillow's bomb warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in SUPPORTED_FORMATS:
                    raise _invalid(
                        f"image format {image.format} is not supported; send PNG, JPEG or WebP",
                        Reason.IMAGE_DECODE_FAILED,
                        field,
                    )
                _check_pixels(image.width, image.height, max_pixels, field)
                image.load()
                upright = ImageOps.exif_transpose(image)
                rgb = upright.convert("RGB")
    except Image.DecompressionBombError as error:
        raise _invalid(
            f"image is too large to decode safely ({error}); the limit is {max_pixels} pixels",
            Reason.IMAGE_TOO_LARGE,
            field,
            limit_px=str(max_pixels),
        ) from error
    except UnidentifiedImageError as error:
        raise _invalid(
            "image bytes are not a PNG, JPEG or WebP file (format not recognised); send a complete image file",
            Reason.IMAGE_DECODE_FAILED,
            field,
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise _invalid(
            f"image bytes could not be decoded ({error}); send a complete PNG, JPEG or WebP file",
            Reason.IMAGE_DECODE_FAILED,
            field,
        ) from error
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def decode_raw_rgb(
    data: bytes, width: int, height: int, *, max_pixels: int, max_bytes: int, field: str = "image.raw"
) -> np.ndarray:
    """View raw interleaved RGB bytes (row-major, ``height * width * 3`` bytes) as ``uint8 [H, W, 3]``.

    The result is a read-only view of ``data`` (no copy).

    Raises:
        InvalidArgument: non-positive size (``INVALID_ARGUMENT``), too many pixels or bytes
            (``IMAGE_TOO_LARGE``), byte count not ``width * height * 3`` (``RAW_IMAGE_SIZE_MISMATCH``).
    """
    if width <= 0 or height <= 0:
        raise _invalid(
            f"raw image width and height must be positive pixels, got width={width}, height={height}",
            Reason.INVALID_ARGUMENT,
            field,
        )
    _check_pixels(width, height, max_pixels, field)
    _check_bytes(len(data), max_bytes, field)
    expected = width * height * 3
    if len(data) != expected:
        raise _invalid(
            f"raw RGB image of {width}x{height} needs width*height*3 = {expected} bytes, got {len(data)}",
            Reason.RAW_IMAGE_SIZE_MISMATCH,
            field,
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)


# -- masks ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rle:
    """One mask in COCO RLE: ``counts`` is pycocotools' compressed counts string (column-major runs,
    starting with background), ``size`` is ``(height, width)`` in pixels.

    ``{"size": list(size), "counts": counts}`` is what ``pycocotools.mask.decode`` takes.
    """

    counts: str
    size: tuple[int, int]


def _as_mask_stack(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got shape {list(masks.shape)}")
    return masks


def encode_rle(masks: np.ndarray) -> list[Rle]:
    """COCO RLE of each mask in ``masks`` (``[N, H, W]``, bool or 0/1), in one pycocotools call."""
    masks = _as_mask_stack(masks)
    if masks.shape[0] == 0:
        return []
    # pycocotools wants a Fortran-ordered uint8 [H, W, N].
    fortran = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8, copy=False))
    encoded = mask_utils.encode(fortran)
    return [Rle(counts=e["counts"].decode("ascii"), size=(int(e["size"][0]), int(e["size"][1]))) for e in encoded]


def decode_rle(rle: Rle) -> np.ndarray:
    """The ``bool [H, W]`` mask of ``rle`` (inverse of :func:`encode_rle`)."""
    decoded = mask_utils.decode({"size": list(rle.size), "counts": rle.counts.encode("ascii")})
    return np.asarray(decoded, dtype=bool)


def encode_png(mask: np.ndarray, bits: Literal[1, 8] = 1) -> bytes:
    """A ``[H, W]`` mask as a grayscale PNG: 1-bit (mode ``1``) or 8-bit (mode ``L``, 0 or 255)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {list(mask.shape)}")
    # Pillow picks the mode from the dtype: bool -> "1", uint8 -> "L".
    if bits == 1:
        image = Image.fromarray(np.ascontiguousarray(mask, dtype=bool))
    elif bits == 8:
        image = Image.fromarray(np.where(mask.astype(bool, copy=False), 255, 0).astype(np.uint8))
    else:
        raise ValueError(f"PNG mask bits must be 1 or 8, got {bits}")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


# -- tensors --------------------------------------------------------------------------------------


def encode_tensor(array: np.ndarray, dtype: TensorDtype = "float32") -> tuple[bytes, list[int]]:
    """``array`` as little-endian ``dtype`` bytes (row-major) and its shape."""
    if dtype not in _WIRE_DTYPES:
        raise ValueError(f"tensor dtype must be one of {sorted(_WIRE_DTYPES)}, got {dtype!r}")
    wire = np.ascontiguousarray(array, dtype=_WIRE_DTYPES[dtype])
    return wire.tobytes(), list(wire.shape)


def decode_tensor(
    data: bytes, shape: Sequence[int], dtype: TensorDtype = "float32", *, field: str = "tensor"
) -> np.ndarray:
    """Little-endian ``dtype`` bytes with ``shape`` as a native float32 array (a new, writable copy).

    Raises:
        InvalidArgument: negative dimensions, a byte count that does not match the shape, or
            non-finite values (NaN, infinity).
    """
    if dtype not in _WIRE_DTYPES:
        raise ValueError(f"tensor dtype must be one of {sorted(_WIRE_DTYPES)}, got {dtype!r}")
    if any(d < 0 for d in shape):
        raise _invalid(f"tensor shape {list(shape)} has a negative dimension", Reason.INVALID_ARGUMENT, field)
    wire = _WIRE_DTYPES[dtype]
    expected = int(np.prod(shape, dtype=np.int64)) * wire.itemsize
    if len(data) != expected:
        raise _invalid(
            f"{dtype} tensor of shape {list(shape)} needs {expected} bytes, got {len(data)}",
            Reason.INVALID_ARGUMENT,
            field,
        )
    array = np.frombuffer(data, dtype=wire).reshape(tuple(shape)).astype(np.float32)
    if not np.isfinite(array).all():
        raise _invalid("tensor contains NaN or infinite values; send finite numbers", Reason.INVALID_ARGUMENT, field)
    return array
