"""Image decoding, image ids, mask encodings (RLE via pycocotools, PNG) and tensor bytes."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from server.codecs import (
    Rle,
    decode_image,
    decode_raw_rgb,
    decode_rle,
    decode_tensor,
    encode_png,
    encode_rle,
    encode_tensor,
    image_id,
)
from server.errors import InvalidArgument

LIMITS = {"max_pixels": 4096 * 4096, "max_bytes": 32 * 1024 * 1024}


def rgb_image(height: int = 12, width: int = 17, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but whose pixel data is a few bytes (a bomb's header)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def invalid(excinfo: pytest.ExceptionInfo[InvalidArgument]) -> tuple[str, str, str]:
    error = excinfo.value
    (violation,) = error.field_violations
    return error.reason, violation.field, error.message


# -- image ids --------------------------------------------------------------------------------------


def test_image_id_is_the_sha256_of_the_bytes_and_raw_ids_include_the_size() -> None:
    assert image_id(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    data = bytes(2 * 3 * 3)
    assert image_id(data, raw_size=(2, 3)) != image_id(data, raw_size=(3, 2))
    assert image_id(data, raw_size=(2, 3)) != image_id(data)


# -- images -----------------------------------------------------------------------------------------


def test_png_decodes_exactly_to_rgb() -> None:
    pixels = rgb_image()
    decoded = decode_image(encode(Image.fromarray(pixels), "PNG"), **LIMITS)
    assert decoded.dtype == np.uint8 and decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_decode_to_rgb_of_the_same_size(fmt: str) -> None:
    pixels = np.full((12, 17, 3), (200, 30, 90), dtype=np.uint8)
    decoded = decode_image(encode(Image.fromarray(pixels), fmt, quality=95), **LIMITS)
    assert decoded.shape == (12, 17, 3)
    assert np.abs(decoded.astype(int) - pixels).max() <= 8


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_other_modes_become_three_channel_rgb(mode: str) -> None:
    image = Image.fromarray(rgb_image()).convert(mode)
    decoded = decode_image(encode(image, "PNG"), **LIMITS)
    np.testing.assert_array_equal(decoded, np.asarray(image.convert("RGB")))


def test_exif_orientation_is_applied() -> None:
    image = Image.fromarray(rgb_image(height=10, width=30))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    decoded = decode_image(encode(image, "JPEG", exif=exif.tobytes()), **LIMITS)
    assert decoded.shape == (30, 10, 3)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"this is not an image", "not a PNG, JPEG or WebP file"),
        (encode(Image.fromarray(rgb_image()), "PNG")[:60], "could not be decoded"),  # truncated
        (encode(Image.fromarray(rgb_image()), "GIF"), "GIF is not supported; send PNG, JPEG or WebP"),
        (encode(Image.fromarray(rgb_image()), "BMP"), "BMP is not supported"),
    ],
    ids=["empty", "garbage", "truncated", "gif", "bmp"],
)
def test_malformed_or_unsupported_bytes_are_invalid_argument(data: bytes, needle: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        decode_image(data, **LIMITS, field="prompt.image.encoded")
    reason, field, message = invalid(excinfo)
    assert reason == "IMAGE_DECODE_FAILED"
    assert field == "prompt.image.encoded"
    assert needle in message


def test_too_many_bytes_names_the_limit() -> None:
    data = encode(Image.fromarray(rgb_image()), "PNG")
    with pytest.raises(InvalidArgument) as excinfo:
        decode_image(data, max_pixels=10**6, max_bytes=len(data) - 1)
    reason, _, message = invalid(excinfo)
    assert reason == "IMAGE_TOO_LARGE"
    assert f"limit of {len(data) - 1} bytes" in message
    assert excinfo.value.metadata == {"limit_bytes": str(len(data) - 1)}


def test_too_many_pixels_is_refused_from_the_header_before_decoding() -> None:
    bomb = png_header_only(8_000, 8_000)  # 64 Mpx claimed in ~100 bytes (under Pillow's own guard)
    with pytest.raises(InvalidArgument) as excinfo:
        decode_image(bomb, max_pixels=16_777_216, max_bytes=1024)
    reason, _, message = invalid(excinfo)
    assert reason == "IMAGE_TOO_LARGE"
    assert "limit of 16777216 pixels" in message


def test_pillows_own_bomb_guard_is_reported_as_too_large() -> None:
    bomb = png_header_only(30_000, 30_000)
    with pytest.raises(InvalidArgument) as excinfo:
        decode_image(bomb, max_pixels=10**10, max_bytes=1024)
    reason, _, message = invalid(excinfo)
    assert reason == "IMAGE_TOO_LARGE"
    assert "10000000000 pixels" in message


def test_raw_rgb_is_viewed_without_copying() -> None:
    pixels = rgb_image()
    data = pixels.tobytes()
    decoded = decode_raw_rgb(data, 17, 12, **LIMITS)
    np.testing.assert_array_equal(decoded, pixels)
    assert not decoded.flags.writeable


@pytest.mark.parametrize(
    ("size", "width", "height", "reason", "needle"),
    [
        (17 * 12 * 3 - 1, 17, 12, "RAW_IMAGE_SIZE_MISMATCH", "needs width*height*3 = 612 bytes, got 611"),
        (17 * 12 * 4, 17, 12, "RAW_IMAGE_SIZE_MISMATCH", "got 816"),
        (0, 0, 12, "INVALID_ARGUMENT", "must be positive"),
        (3, 1, -1, "INVALID_ARGUMENT", "must be positive"),
        (5000 * 5000 * 3, 5000, 5000, "IMAGE_TOO_LARGE", "limit of 16777216 pixels"),
    ],
)
def test_bad_raw_rgb_is_invalid_argument(size: int, width: int, height: int, reason: str, needle: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        decode_raw_rgb(bytes(size), width, height, max_pixels=16_777_216, max_bytes=10**9)
    got_reason, field, message = invalid(excinfo)
    assert (got_reason, field) == (reason, "image.raw")
    assert needle in message


# -- masks ------------------------------------------------------------------------------------------

mask_stacks = st.tuples(st.integers(1, 4), st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda shape: arrays(np.bool_, shape)
)


@settings(max_examples=150, deadline=None)
@given(mask_stacks)
def test_rle_round_trips_through_pycocotools(masks: np.ndarray) -> None:
    encoded = encode_rle(masks)

    assert len(encoded) == masks.shape[0]
    for mask, rle in zip(masks, encoded, strict=True):
        assert isinstance(rle.counts, str)
        assert rle.size == mask.shape
        coco = {"size": list(rle.size), "counts": rle.counts}  # as a client would rebuild it from JSON
        np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), mask)
        assert int(mask_utils.area(coco)) == int(mask.sum())
        np.testing.assert_array_equal(decode_rle(rle), mask)


def test_rle_of_a_known_mask() -> None:
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 2] = True  # column-major index 7: 7 background, 1 foreground, 4 background
    (rle,) = encode_rle(mask[None])
    assert rle == Rle(counts="714", size=(3, 4))
    assert encode_rle(np.zeros((0, 3, 4), bool)) == []


@pytest.mark.parametrize(("bits", "mode"), [(1, "1"), (8, "L")])
def test_png_masks_round_trip(bits: int, mode: str) -> None:
    mask = np.random.default_rng(0).random((23, 31)) > 0.5
    png = encode_png(mask, bits=bits)  # type: ignore[arg-type]
    with Image.open(io.BytesIO(png)) as image:
        assert (image.format, image.mode, image.size) == ("PNG", mode, (31, 23))
        values = np.asarray(image)
    np.testing.assert_array_equal(values.astype(bool), mask)
    if bits == 8:
        assert set(np.unique(values)) <= {0, 255}


# -- tensors ----------------------------------------------------------------------------------------

finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 4), st.integers(1, 8), st.integers(1, 8)), elements=finite))
def test_float32_tensors_round_trip_exactly(array: np.ndarray) -> None:
    data, shape = encode_tensor(array)
    assert shape == list(array.shape) and len(data) == array.size * 4
    np.testing.assert_array_equal(decode_tensor(data, shape), array)


def test_float16_tensors_are_half_the_bytes_and_round_to_half_precision() -> None:
    array = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    data, shape = encode_tensor(array, "float16")
    assert len(data) == array.size * 2
    decoded = decode_tensor(data, shape, "float16")
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, array.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize(
    ("data", "shape", "needle"),
    [
        (bytes(4 * 15), [4, 4], "needs 64 bytes, got 60"),
        (bytes(8), [-2, 1], "negative dimension"),
        (np.array([1.0, np.nan], np.float32).tobytes(), [2], "NaN or infinite"),
        (np.array([np.inf], np.float32).tobytes(), [1], "NaN or infinite"),
    ],
)
def test_bad_tensor_bytes_are_invalid_argument(data: bytes, shape: list[int], needle: str) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        decode_tensor(data, shape, field="prompt_sets[0].mask_logits")
    _, field, message = invalid(excinfo)
    assert field == "prompt_sets[0].mask_logits"
    assert needle in message
