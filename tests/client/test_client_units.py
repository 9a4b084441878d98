"""Client pieces that need no server: image ids, prompts, mask decoding, error mapping, overlay."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pycocotools.mask as coco
import pytest
from PIL import Image
from sam_client import _core, images, masks
from sam_client.errors import (
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    SamError,
    UnavailableError,
    from_rpc_error,
)
from sam_client.overlay import draw_overlay
from sam_client.types import Box, Mask, Point, PromptSet

from server import codecs
from server.errors import FieldViolation as ServerFieldViolation
from server.errors import InvalidArgument, NotFound, Reason, Unavailable, to_rpc_status


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# -- image ids: the same as the server's -------------------------------------------------------------


def test_image_id_matches_the_server_for_files_arrays_and_pil(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    data = _png(pixels)
    path = tmp_path / "x.png"
    path.write_bytes(data)
    assert images.prepare_image(path).image_id == codecs.image_id(data)
    assert images.prepare_image(str(path)).image_id == codecs.image_id(data)
    assert images.prepare_image(data).image_id == codecs.image_id(data)
    raw_id = codecs.image_id(pixels.tobytes(), raw_size=(5, 7))
    prepared = images.prepare_image(pixels)
    assert prepared.image_id == raw_id
    assert prepared.message.raw.width_px == 5 and prepared.message.raw.height_px == 7
    assert images.prepare_image(Image.fromarray(pixels)).image_id == raw_id
    # non-contiguous views hash their pixels, not their memory layout
    assert images.prepare_image(np.ascontiguousarray(pixels[:, ::-1])[:, ::-1]).image_id == raw_id


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("/no/such/image.png", FileNotFoundError),
        (b"", ValueError),
        (np.zeros((4, 4), np.uint8), ValueError),
        (np.zeros((4, 4, 3), np.float32), ValueError),
        (12, TypeError),
    ],
)
def test_unusable_images_raise_with_what_to_pass(value, error) -> None:
    with pytest.raises(error):
        images.prepare_image(value)


# -- prompts -----------------------------------------------------------------------------------------


def test_points_accept_tuples_with_sam_labels_and_points() -> None:
    assert _core.as_point((1, 2)) == Point(1.0, 2.0, True)
    assert _core.as_point((1, 2, 0)) == Point(1.0, 2.0, False)
    assert _core.as_point((1, 2, "fg")) == Point(1.0, 2.0, True)
    assert _core.as_point(Point(3, 4, False)) == Point(3, 4, False)
    with pytest.raises(ValueError, match="label"):
        _core.as_point((1, 2, 5))


def test_segment_request_builds_prompt_sets_modes_and_encodings() -> None:
    logits = np.zeros((256, 256), np.float32)
    request = _core.segment_request(
        points=[(1, 2), (3, 4, 0)], box=(0, 0, 5, 6), mask_logits=logits, mask_id=None,
        prompt_sets=None, mode="multi", encoding="png",
    )  # fmt: skip
    (prompts,) = request.prompt_sets
    assert [(p.x, p.y, p.label) for p in prompts.points] == [(1, 2, 1), (3, 4, 2)]
    assert (prompts.box.x_max, prompts.box.y_max) == (5, 6)
    assert list(prompts.mask.logits.shape) == [256, 256]
    assert request.multimask_mode == 2 and request.mask_encoding == 2
    many = _core.segment_request(
        points=None, box=None, mask_logits=None, mask_id=None,
        prompt_sets=[PromptSet(points=(Point(1, 1),)), PromptSet(box=Box(0, 0, 2, 2), mask_id="m")],
        mode="auto", encoding="rle",
    )  # fmt: skip
    assert len(many.prompt_sets) == 2 and many.prompt_sets[1].mask.mask_id == "m"
    with pytest.raises(ValueError, match="at least one prompt"):
        _core.segment_request(
            points=None, box=None, mask_logits=None, mask_id=None, prompt_sets=None, mode="auto", encoding="rle"
        )
    with pytest.raises(ValueError, match="mode"):
        _core.segment_request(
            points=[(1, 1)], box=None, mask_logits=None, mask_id=None, prompt_sets=None, mode="x", encoding="rle"
        )


# -- masks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (64, 33), (300, 200)])
def test_own_rle_decoder_equals_pycocotools(shape) -> None:
    rng = np.random.default_rng(sum(shape))
    cases = [
        np.zeros(shape, bool),
        np.ones(shape, bool),
        rng.random(shape) > 0.5,
        rng.random(shape) > 0.97,
        np.pad(
            np.ones((shape[0] // 2, shape[1] // 2), bool),
            ((0, shape[0] - shape[0] // 2), (0, shape[1] - shape[1] // 2)),
        ),
    ]
    for mask in cases:
        (rle,) = codecs.encode_rle(mask[None])
        assert np.array_equal(masks.decode_rle_numpy(*rle.size, rle.counts), mask)
        assert np.array_equal(masks.decode_rle(*rle.size, rle.counts), mask)
        reference = coco.decode({"size": list(rle.size), "counts": rle.counts.encode()}).astype(bool)
        assert np.array_equal(reference, mask)


def test_rle_decoder_rejects_counts_of_the_wrong_size() -> None:
    (rle,) = codecs.encode_rle(np.ones((1, 4, 4), bool))
    with pytest.raises(ValueError, match="expected 5x4"):
        masks.decode_rle_numpy(5, 4, rle.counts)


def test_png_and_tensor_round_trips() -> None:
    mask = np.random.default_rng(1).random((9, 13)) > 0.5
    assert np.array_equal(masks.decode_png(codecs.encode_png(mask)), mask)
    assert np.array_equal(masks.decode_png(masks.encode_png(mask)), mask)
    logits = np.random.default_rng(2).normal(size=(4, 4)).astype(np.float32)
    assert np.array_equal(masks.decode_tensor(masks.encode_tensor(logits)), logits)
    with pytest.raises(ValueError, match="finite"):
        masks.encode_tensor(np.array([np.nan], np.float32))


# -- errors ------------------------------------------------------------------------------------------


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple = ()) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._trailing


def _rpc_error(error) -> _FakeRpcError:
    status = to_rpc_status(error)
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    return _FakeRpcError(code, status.message, (("grpc-status-details-bin", status.SerializeToString()),))


@pytest.mark.parametrize(
    ("server_error", "cls", "reason", "fields", "retry_delay_s"),
    [
        (
            InvalidArgument(
                "x is outside the image", Reason.POINT_OUTSIDE_IMAGE,
                field_violations=[ServerFieldViolation("prompt_sets[0].points[0].x", "must be < 640")],
            ),
            InvalidArgumentError, "POINT_OUTSIDE_IMAGE", ("prompt_sets[0].points[0].x",), None,
        ),
        (NotFound("send the image", Reason.EMBEDDING_NOT_FOUND), NotFoundError, "EMBEDDING_NOT_FOUND", (), None),
        (Unavailable("triton down", Reason.BACKEND_UNAVAILABLE, retry_delay_s=0.5), UnavailableError,
         "BACKEND_UNAVAILABLE", (), 0.5),
        (RuntimeError("boom"), InternalError, "INTERNAL", (), None),
    ],
)  # fmt: skip
def test_errors_keep_code_reason_fields_and_retry_delay(server_error, cls, reason, fields, retry_delay_s) -> None:
    error = from_rpc_error(_rpc_error(server_error))
    assert type(error) is cls and isinstance(error, SamError)
    assert error.reason == reason and error.domain == "segmentanything.v1"
    assert error.fields == fields
    assert error.retry_delay_s == retry_delay_s
    if fields:
        assert error.field_violations == (FieldViolation(fields[0], "must be < 640"),)
        assert fields[0] in str(error)


def test_an_error_without_details_still_maps_by_code() -> None:
    error = from_rpc_error(_FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert isinstance(error, UnavailableError)
    assert (error.reason, error.message, error.field_violations) == ("UNAVAILABLE", "connection refused", ())


def test_retry_policy_retries_only_unavailable_with_bounded_jittered_backoff() -> None:
    import random

    policy = _core.RetryPolicy(max_attempts=4, initial_backoff_s=0.1, max_backoff_s=0.3, multiplier=2)
    rng = random.Random(0)
    unavailable = UnavailableError(grpc.StatusCode.UNAVAILABLE, "down")
    pauses = [policy.pause_s(n, unavailable, rng) for n in (1, 2, 3)]
    assert all(p is not None for p in pauses)
    assert 0 <= pauses[0] <= 0.1 and 0 <= pauses[1] <= 0.2 and 0 <= pauses[2] <= 0.3
    assert policy.pause_s(4, unavailable, rng) is None  # attempts used up
    for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL):
        assert policy.pause_s(1, SamError(code, "no"), rng) is None
    told = UnavailableError(grpc.StatusCode.UNAVAILABLE, "later", retry_delay_s=0.25)
    assert policy.pause_s(1, told, rng) >= 0.25


# -- overlay -----------------------------------------------------------------------------------------


def test_overlay_has_the_image_size_and_draws_masks_and_prompts() -> None:
    image = np.full((60, 90, 3), 128, np.uint8)
    mask = np.zeros((60, 90), bool)
    mask[10:30, 20:50] = True
    result = Mask(score=0.9, area_px=600, bbox=Box(20, 10, 49, 29), mask_id="m", mask=mask)
    overlay = draw_overlay(image, [result], points=[Point(30, 20), Point(80, 50, False)], boxes=[Box(15, 5, 55, 35)])
    assert overlay.size == (90, 60) and overlay.mode == "RGB"
    pixels = np.asarray(overlay)
    assert not np.array_equal(pixels[mask], image[mask])  # tinted
    assert np.array_equal(pixels[58, 2], image[58, 2])  # far from everything: untouched
