"""Full-stack fidelity: masks and scores over gRPC (gateway + Triton) equal the in-process
``sam.Predictor`` on the same model, image and prompts.

Tolerances: predicted IoU and low-res logits to float precision (TorchScript in Triton vs eager
PyTorch, both float32); masks identical except at pixels whose logit is within 1e-2 of the
threshold (the gateway upsamples in numpy, the predictor with ``F.interpolate``). Run against the
plain gateway and against one that passes embeddings through shared memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from sam.ranking import rank_order
from segmentanything.v1 import segment_anything_pb2 as pb
from tests.server.helpers import BG, FG, logits_tensor, mask_pixels, png, point_set, scene, stub, tensor_array

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(r"ignore:.*torch\.jit\..* is deprecated:DeprecationWarning"),
]

HEIGHT, WIDTH = 330, 410
LOGIT_MARGIN = 1e-2

# (points [(x, y, label)], box XYXY or None, multimask)
CASES = [
    ([(120, 150, 1)], None, True),
    ([(120, 150, 1)], None, False),
    ([(60, 40, 1), (300, 260, 0)], None, True),
    ([(200.5, 100.25, 1), (210, 110, 1), (30, 300, 0)], None, False),
    ([], (40, 50, 260, 300), False),
    ([], (40, 50, 260, 300), True),
    ([(150, 170, 1)], (40, 50, 260, 300), False),
    ([(0, 0, 1)], None, True),  # corner pixels of the image
    ([(409, 329, 0), (5, 5, 1)], None, False),
]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return scene(HEIGHT, WIDTH, seed=7)


@pytest.fixture(scope="module")
def predictor(sam_service: Any, image: np.ndarray) -> Any:
    import sam

    predictor = sam.Predictor(sam_service.build_model())
    predictor.set_image(image)
    return predictor


@pytest.fixture(scope="module", params=["plain", "shared_memory"])
def api(request: pytest.FixtureRequest, sam_service: Any) -> Iterator[Any]:
    if request.param == "plain":
        gateway = sam_service.gateway
    else:
        gateway = sam_service.start_gateway(use_shared_memory=True)
    channel = gateway.channel()
    try:
        yield stub(channel)
    finally:
        channel.close()
        if gateway is not sam_service.gateway:
            gateway.stop()


@pytest.fixture(scope="module")
def image_id(api: Any, image: np.ndarray) -> str:
    return str(api.EmbedImage(pb.EmbedImageRequest(image=pb.Image(encoded=png(image)))).image_id)


def _expected(
    predictor: Any,
    points: list[tuple[float, float, int]],
    box: Any,
    multimask: bool,
    mask_input: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    logits, iou, low_res = predictor.predict(
        point_coords=np.array([(x, y) for x, y, _ in points], np.float64) if points else None,
        point_labels=np.array([label for *_, label in points]) if points else None,
        box=None if box is None else np.array(box, np.float64),
        mask_input=mask_input,
        multimask_output=multimask,
        return_logits=True,
    )
    order = rank_order(iou)
    return logits[order], iou[order], low_res[order]


def _request_set(points: list[tuple[float, float, int]], box: Any, mask: pb.MaskPrompt | None = None) -> pb.PromptSet:
    return point_set(*[(x, y, FG if label == 1 else BG) for x, y, label in points], box=box, mask=mask)


def _assert_masks_match(
    result: pb.PromptSetResult,
    low_res: pb.PromptSetResult,
    logits: np.ndarray,
    iou: np.ndarray,
    expected_low: np.ndarray,
) -> None:
    assert len(result.masks) == len(iou)
    np.testing.assert_allclose([m.score for m in result.masks], iou, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose([m.score for m in low_res.masks], iou, atol=1e-4, rtol=1e-4)
    for k, mask in enumerate(result.masks):
        np.testing.assert_allclose(tensor_array(low_res.masks[k].low_res_logits), expected_low[k], atol=1e-3, rtol=1e-4)
        got = mask_pixels(mask)
        want = logits[k] > 0.0
        differ = got != want
        assert not (differ & (np.abs(logits[k]) >= LOGIT_MARGIN)).any(), (
            f"mask {k}: {int(differ.sum())} pixels differ, some with |logit| >= {LOGIT_MARGIN}"
        )
        assert abs(mask.area_px - int(want.sum())) <= int(differ.sum())


@pytest.mark.parametrize(("points", "box", "multimask"), CASES)
def test_segment_over_grpc_equals_the_in_process_predictor(
    api: Any, image_id: str, predictor: Any, points: Any, box: Any, multimask: bool
) -> None:
    logits, iou, low = _expected(predictor, points, box, multimask)
    mode = pb.SegmentRequest.MULTI if multimask else pb.SegmentRequest.SINGLE
    prompt = _request_set(points, box)
    rle = api.Segment(pb.SegmentRequest(image_id=image_id, prompt_sets=[prompt], multimask_mode=mode))
    raw = api.Segment(
        pb.SegmentRequest(
            image_id=image_id, prompt_sets=[prompt], multimask_mode=mode, mask_encoding=pb.Mask.LOW_RES_LOGITS
        )
    )
    _assert_masks_match(rle.results[0], raw.results[0], logits, iou, low)


def test_batched_sets_and_mask_prompts_equal_the_predictor(api: Any, image_id: str, predictor: Any) -> None:
    # One call with every case (several decoder groups), then a refinement with the best mask's logits.
    sets = [_request_set(points, box) for points, box, _ in CASES]
    multi = api.Segment(
        pb.SegmentRequest(
            image_id=image_id,
            prompt_sets=sets,
            multimask_mode=pb.SegmentRequest.MULTI,
            mask_encoding=pb.Mask.LOW_RES_LOGITS,
        )
    )
    for (points, box, _), result in zip(CASES, multi.results, strict=True):
        _, iou, low = _expected(predictor, points, box, True)
        np.testing.assert_allclose([m.score for m in result.masks], iou, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(
            np.stack([tensor_array(m.low_res_logits) for m in result.masks]), low, atol=1e-3, rtol=1e-4
        )

    best = multi.results[0].masks[0]
    refine = [(125, 160, 1), (330, 40, 0)]
    logits, iou, low = _expected(predictor, refine, None, False, tensor_array(best.low_res_logits))
    for mask_prompt in (
        pb.MaskPrompt(mask_id=best.mask_id),
        pb.MaskPrompt(logits=best.low_res_logits),
        pb.MaskPrompt(logits=logits_tensor(tensor_array(best.low_res_logits))),
    ):
        prompt = _request_set(refine, None, mask_prompt)
        rle = api.Segment(pb.SegmentRequest(image_id=image_id, prompt_sets=[prompt]))
        raw = api.Segment(
            pb.SegmentRequest(image_id=image_id, prompt_sets=[prompt], mask_encoding=pb.Mask.LOW_RES_LOGITS)
        )
        _assert_masks_match(rle.results[0], raw.results[0], logits, iou, low)


def test_the_embedding_equals_the_predictors(api: Any, image: np.ndarray, predictor: Any) -> None:
    response = api.EmbedImage(
        pb.EmbedImageRequest(image=pb.Image(encoded=png(image)), embedding_data_type=pb.Tensor.FLOAT32)
    )
    assert response.cached
    expected = predictor.get_image_embedding()[0].numpy()
    np.testing.assert_allclose(tensor_array(response.embedding), expected, atol=1e-4, rtol=1e-4)


def test_masks_are_not_trivial(api: Any, image_id: str) -> None:
    """The fixed random weights give masks with object and background pixels (else the above proves little)."""
    response = api.Segment(
        pb.SegmentRequest(
            image_id=image_id,
            prompt_sets=[_request_set(p, b) for p, b, _ in CASES],
            multimask_mode=pb.SegmentRequest.MULTI,
        )
    )
    fractions = [m.area_px / (HEIGHT * WIDTH) for r in response.results for m in r.masks]
    assert sum(0.02 < f < 0.98 for f in fractions) >= len(fractions) // 2, fractions
