"""GenerateMasks end to end (real Triton + gateway on the tiny random-weight model): the streamed
masks equal the in-process ``sam.MaskGenerator`` on the same weights, progress reaches the total,
bad parameters are INVALID_ARGUMENT naming the field, and cancelling stops the decoder requests.

Tolerances: the gateway decodes with the TorchScript decoder in Triton (float32 prompt coordinates)
and upscales with numpy, the in-process generator decodes eagerly (float64 coordinates into the
prompt encoder) and upscales with ``F.interpolate``. Predicted IoUs and stability scores therefore
agree to float precision, not bit for bit, and a pixel whose upscaled logit lies within rounding of
the threshold can flip. So: same number of masks, same order (prompting point, crop), scores within
1e-4, boxes within 1 px, and each segmentation equal or with IoU > 0.99 against its counterpart.
The parameters are chosen so that no candidate's score lies within 1e-5 of a threshold (checked on
the unfiltered output), where such a float difference could change which masks pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from segmentanything.v1 import segment_anything_pb2 as pb
from tests.server.helpers import error_details, inference_count, mask_pixels, png, scene, settled_inference_count, stub

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:.*torch\.jit\..* is deprecated:DeprecationWarning"),
]

HEIGHT, WIDTH = 120, 160
OFF = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
MARGIN = 1e-5  # scores agree to about 2e-7

# The random-weight model's masks are large blobs with near-identical boxes, so box NMS keeps
# about one mask; the cases with NMS at 1.0 compare many masks, the others one or two survivors.
FILTERS = {"pred_iou_thresh": 0.015, "stability_score_offset": 0.02, "stability_score_thresh": 0.65}
CASES = [
    pytest.param({"points_per_side": 8, "box_nms_thresh": 1.0, **OFF}, id="everything"),  # 192 masks
    pytest.param({"points_per_side": 8, "box_nms_thresh": 1.0, "points_per_batch": 20, **FILTERS},
                 id="filters"),  # 34 masks
    pytest.param({"points_per_side": 8, **FILTERS}, id="filters-and-nms"),
    pytest.param({"points_per_side": 4, "crop_n_layers": 1, "stability_score_offset": 0.02,
                  "crop_overlap_ratio": 0.25, "box_nms_thresh": 0.9, **OFF}, id="crops"),
    pytest.param({"points_per_side": 4, "min_mask_region_area": 300, "stability_score_offset": 0.02,
                  "box_nms_thresh": 0.98, **OFF}, id="small-regions"),  # islands removed: 4749 -> 89 px
]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return scene(HEIGHT, WIDTH, seed=3)


@pytest.fixture(scope="module")
def api(sam_service: Any) -> Iterator[Any]:
    channel = sam_service.channel()
    try:
        yield stub(channel)
    finally:
        channel.close()


@pytest.fixture(scope="module")
def model(sam_service: Any) -> Iterator[Any]:
    import torch

    # One intra-op thread: on the shared 2-core machine, next to Triton, OpenMP barriers made the
    # tiny model's generator 20x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield sam_service.build_model()
    torch.set_num_threads(threads)


def _generate(api: Any, request: pb.GenerateMasksRequest) -> list[pb.GenerateMasksResponse]:
    return list(api.GenerateMasks(request))


def _check_margins(model: Any, image: np.ndarray, params: dict[str, Any]) -> None:
    """No candidate's in-process score lies within MARGIN of a threshold."""
    import sam

    unfiltered = {**params, **OFF, "box_nms_thresh": 1.0, "crop_nms_thresh": 1.0, "min_mask_region_area": 0}
    expected = sam.MaskGenerator(model, **unfiltered).generate(image)
    for key, threshold in (("predicted_iou", params.get("pred_iou_thresh", 0.88)),
                           ("stability_score", params.get("stability_score_thresh", 0.95))):
        if threshold > 0:
            assert all(abs(a[key] - threshold) > MARGIN for a in expected), f"a {key} is too close to {threshold}"


@pytest.mark.parametrize("params", CASES)
def test_same_masks_as_the_in_process_generator(api: Any, model: Any, image: np.ndarray,
                                                params: dict[str, Any]) -> None:
    import sam

    _check_margins(model, image, params)
    expected = sam.MaskGenerator(model, **params).generate(image)
    assert expected, "the case should produce masks"
    responses = _generate(api, pb.GenerateMasksRequest(image=pb.Image(encoded=png(image)), **params))
    got = [m for r in responses for m in r.masks]

    assert len(got) == len(expected)
    assert [(a["point_coords"][0], a["crop_box"]) for a in expected] == [
        ([m.input_point.x, m.input_point.y],
         [m.crop_box.x_min, m.crop_box.y_min, m.crop_box.x_max - m.crop_box.x_min, m.crop_box.y_max - m.crop_box.y_min])
        for m in got
    ]  # fmt: skip
    for a, m in zip(expected, got, strict=True):
        assert m.input_point.label == pb.Point.FOREGROUND
        assert m.mask.mask_id == ""
        assert m.mask.score == pytest.approx(a["predicted_iou"], abs=1e-4)
        assert m.stability_score == pytest.approx(a["stability_score"], abs=1e-4)
        box = m.mask.bbox  # inclusive XYXY; the generator's bbox is XYWH with w = x1 - x0
        xywh = [box.x_min, box.y_min, box.x_max - box.x_min, box.y_max - box.y_min]
        assert np.abs(np.array(xywh) - np.array(a["bbox"])).max() <= 1
        pixels = mask_pixels(m.mask)
        assert pixels.shape == (HEIGHT, WIDTH)
        assert m.mask.area_px == int(pixels.sum())
        union = np.logical_or(pixels, a["segmentation"]).sum()
        iou = np.logical_and(pixels, a["segmentation"]).sum() / union if union else 1.0
        assert iou > 0.99


def test_progress_then_masks(api: Any, image: np.ndarray) -> None:
    params = {"points_per_side": 6, "points_per_batch": 10, "box_nms_thresh": 1.0, **OFF}
    responses = _generate(api, pb.GenerateMasksRequest(image=pb.Image(encoded=png(image)), **params))
    assert all(r.points_total == 36 for r in responses)
    progress = [r for r in responses if not r.masks]
    assert [r.points_done for r in progress] == [10, 20, 30, 36]
    finals = responses[len(progress):]
    assert finals and all(r.masks and r.points_done == 36 for r in finals)
    assert sum(len(r.masks) for r in finals) == 36 * 3  # nothing filtered
    scores = [m.mask.score for r in finals for m in r.masks]
    assert scores == sorted(scores, reverse=True)


def test_crop_layers_count_their_points(api: Any, image: np.ndarray) -> None:
    params = {"points_per_side": 4, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2, **OFF}
    responses = _generate(api, pb.GenerateMasksRequest(image=pb.Image(encoded=png(image)), **params))
    assert responses[-1].points_done == responses[-1].points_total == 16 + 4 * 4 + 16 * 1


def test_cached_image_by_id_and_png_masks(api: Any, image: np.ndarray) -> None:
    image_id = api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=png(image)))).image_id
    params = {"points_per_side": 4, "box_nms_thresh": 1.0, **OFF}
    by_id = _generate(api, pb.GenerateMasksRequest(image_id=image_id, mask_encoding=pb.Mask.PNG, **params))
    inline = _generate(api, pb.GenerateMasksRequest(image=pb.Image(encoded=png(image)), **params))
    masks_by_id = [m for r in by_id for m in r.masks]
    masks_inline = [m for r in inline for m in r.masks]
    assert len(masks_by_id) == len(masks_inline) == 48
    for a, b in zip(masks_by_id, masks_inline, strict=True):
        assert a.mask.HasField("png") and b.mask.HasField("rle")
        np.testing.assert_array_equal(mask_pixels(a.mask), mask_pixels(b.mask))
        assert a.mask.score == b.mask.score


_INVALID = [
    ({"points_per_side": 65}, "points_per_side", "limit of 64"),
    ({"crop_n_layers": 3}, "crop_n_layers", "limit of 2"),
    ({"points_per_side": 0}, "points_per_side", ">= 1"),
    ({"points_per_batch": 0}, "points_per_batch", ">= 1"),
    ({"pred_iou_thresh": math.nan}, "pred_iou_thresh", "finite"),
    ({"stability_score_offset": -1.0}, "stability_score_offset", ">= 0"),
    ({"box_nms_thresh": 1.5}, "box_nms_thresh", "<= 1"),
    ({"crop_nms_thresh": -0.5}, "crop_nms_thresh", ">= 0"),
    ({"crop_overlap_ratio": 1.0}, "crop_overlap_ratio", "< 1"),
    ({"crop_n_points_downscale_factor": 0}, "crop_n_points_downscale_factor", ">= 1"),
    ({"min_mask_region_area": -1}, "min_mask_region_area", ">= 0"),
    ({"points_per_side": 2, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2}, "points_per_side",
     "crop layer 2"),
    ({"mask_encoding": pb.Mask.LOW_RES_LOGITS}, "mask_encoding", "RLE or PNG"),
]


@pytest.mark.parametrize(("params", "field", "text"), _INVALID)
def test_invalid_parameters(api: Any, image: np.ndarray, params: dict[str, Any], field: str, text: str) -> None:
    request = pb.GenerateMasksRequest(image=pb.Image(encoded=png(image)), **params)
    with pytest.raises(grpc.RpcError) as raised:
        _generate(api, request)
    details = error_details(raised.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details.fields and text in details.fields[field]
    assert text in details.message


def test_crop_layers_need_the_image_not_its_id(api: Any, image: np.ndarray) -> None:
    image_id = api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=png(image)))).image_id
    with pytest.raises(grpc.RpcError) as raised:
        _generate(api, pb.GenerateMasksRequest(image_id=image_id, crop_n_layers=1))
    details = error_details(raised.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "send the image inline" in details.fields["crop_n_layers"]


def test_unknown_image_id_is_not_found(api: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _generate(api, pb.GenerateMasksRequest(image_id="0" * 64, points_per_side=2))
    details = error_details(raised.value)
    assert details.code == grpc.StatusCode.NOT_FOUND and details.reason == "EMBEDDING_NOT_FOUND"


def test_missing_image_is_invalid(api: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _generate(api, pb.GenerateMasksRequest(points_per_side=2))
    assert error_details(raised.value).code == grpc.StatusCode.INVALID_ARGUMENT


def test_cancelling_stops_the_decoder_requests(sam_service: Any, api: Any, image: np.ndarray) -> None:
    # 64 x 64 points, one per decoder request: 4096 requests if nothing stopped it.
    request = pb.GenerateMasksRequest(image=pb.Image(encoded=png(image)), points_per_side=64, points_per_batch=1)
    before = inference_count(sam_service.triton_url, "sam_decoder")
    call = api.GenerateMasks(request)
    first = next(call)
    assert first.points_done == 1 and first.points_total == 4096
    call.cancel()
    at_cancel = inference_count(sam_service.triton_url, "sam_decoder")
    last = settled_inference_count(sam_service.triton_url, "sam_decoder", quiet_s=1.0)
    assert last - at_cancel <= 1  # at most the request in flight when the cancel arrived
    assert last - before < 100  # far from the 4096 of a finished run
    with pytest.raises(grpc.RpcError) as raised:
        next(call)
    assert raised.value.code() == grpc.StatusCode.CANCELLED
    # The gateway still serves.
    after = _generate(api, pb.GenerateMasksRequest(image=pb.Image(encoded=png(image)), points_per_side=1))
    assert after[-1].points_done == after[-1].points_total == 1
