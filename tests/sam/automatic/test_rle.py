import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from sam.automatic.boxes import masks_to_boxes
from sam.automatic.crops import uncrop_masks
from sam.automatic.rle import masks_to_rles, rle_area, rle_to_coco, rle_to_mask
from sam.automatic.runs import ColumnRuns


@st.composite
def mask_batches(draw: st.DrawFn) -> np.ndarray:
    n, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    style = draw(st.sampled_from(["random", "empty", "full", "block"]))
    if style == "empty":
        return np.zeros((n, h, w), bool)
    if style == "full":
        return np.ones((n, h, w), bool)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if style == "random":
        return rng.random((n, h, w)) < draw(st.floats(0.0, 1.0))
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        masks[i, y0:rng.integers(y0, h + 1), x0:rng.integers(x0, w + 1)] = True
    return masks


@settings(max_examples=200, deadline=None)
@given(masks=mask_batches())
def test_rle_round_trips_through_pycocotools(masks: np.ndarray) -> None:
    rles = masks_to_rles(masks)
    for mask, rle in zip(masks, rles, strict=True):
        assert rle["size"] == list(mask.shape)
        assert all(isinstance(c, int) for c in rle["counts"])
        decoded = mask_utils.decode(mask_utils.frPyObjects(rle, *rle["size"]))
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        np.testing.assert_array_equal(rle_to_mask(rle), mask)
        assert rle_area(rle) == int(mask.sum())
        coco = rle_to_coco(rle)
        expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert coco["counts"] == expected["counts"].decode("utf-8")
        assert coco["size"] == list(mask.shape)
        # Canonical form: a leading zero only when the first pixel is set, no empty runs after it.
        assert (rle["counts"][0] == 0) == bool(mask.T.flat[0]) or mask.size == 0
        assert all(c > 0 for c in rle["counts"][1:])


@settings(max_examples=200, deadline=None)
@given(masks=mask_batches(), data=st.data())
def test_runs_place_crops_like_padding(masks: np.ndarray, data: st.DataObject) -> None:
    n, h, w = masks.shape
    x0, y0 = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 5))
    height = y0 + h + data.draw(st.integers(0, 5))
    width = x0 + w + data.draw(st.integers(0, 5))
    crop = [x0, y0, x0 + w, y0 + h]
    runs = ColumnRuns.from_masks(masks)
    padded = uncrop_masks(masks, crop, (height, width))
    for mask, rle in zip(padded, runs.rles(crop, (height, width)), strict=True):
        np.testing.assert_array_equal(mask_utils.decode(mask_utils.frPyObjects(rle, height, width)).astype(bool), mask)
    assert runs.rles(crop, (height, width), which=[n - 1]) == runs.rles(crop, (height, width))[-1:]
    assert np.array_equal(runs.boxes(), masks_to_boxes(masks))


def test_boxes_hand_example() -> None:
    masks = np.zeros((3, 5, 6), dtype=bool)
    masks[0, 1:3, 2:5] = True  # rows 1..2, columns 2..4
    masks[1, 4, 0] = True
    expected = [[2, 1, 4, 2], [0, 4, 0, 4], [0, 0, 0, 0]]
    assert masks_to_boxes(masks).tolist() == expected
    assert ColumnRuns.from_masks(masks).boxes().tolist() == expected


def test_rle_hand_example() -> None:
    mask = np.array([[1, 0, 0], [1, 1, 0]], dtype=bool)  # column-major: 1 1 0 1 0 0
    assert masks_to_rles(mask[None]) == [{"size": [2, 3], "counts": [0, 2, 1, 1, 2]}]


def test_rle_with_wrong_total_is_rejected() -> None:
    import pytest

    with pytest.raises(ValueError, match="counts sum"):
        rle_to_mask({"size": [2, 2], "counts": [1, 2]})
