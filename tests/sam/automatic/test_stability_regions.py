import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sam.automatic.regions import remove_small_regions
from sam.automatic.stability import stability_score


def test_stability_hand_example() -> None:
    logits = np.array([[[3.0, 0.5, -0.5, -3.0], [2.0, 1.0, -1.0, -2.0]]], dtype=np.float32)
    # > 1: 3, 2 (1.0 is not > 1) -> 2 pixels; > -1: 3, 0.5, -0.5, 2, 1 -> 5 pixels
    score = stability_score(logits, 0.0, 1.0)
    assert score.dtype == np.float32
    assert score.tolist() == [pytest.approx(2 / 5)]
    assert stability_score(logits, 0.0, 0.0).tolist() == [1.0]


def test_stability_of_an_empty_mask_is_nan() -> None:
    score = stability_score(np.full((2, 3, 3), -5.0, np.float32), 0.0, 1.0)
    assert all(math.isnan(v) for v in score.tolist())


def test_stability_batch_shape() -> None:
    logits = np.random.default_rng(0).standard_normal((2, 3, 8, 9)).astype(np.float32)
    score = stability_score(logits, 0.0, 1.0)
    assert score.shape == (2, 3)
    expected = (logits > 1).sum((-1, -2)).astype(np.float32) / (logits > -1).sum((-1, -2)).astype(np.float32)
    assert np.array_equal(score, expected)


def test_small_hole_is_filled_large_hole_kept() -> None:
    mask = np.ones((20, 20), bool)
    mask[2:4, 2:4] = False  # 4 px hole
    mask[8:16, 8:16] = False  # 64 px hole
    out, changed = remove_small_regions(mask, 10, "holes")
    assert changed
    assert out[2:4, 2:4].all() and not out[8:16, 8:16].any()


def test_small_island_is_removed() -> None:
    mask = np.zeros((20, 20), bool)
    mask[0:10, 0:10] = True
    mask[15, 15] = True
    out, changed = remove_small_regions(mask, 5, "islands")
    assert changed and not out[15, 15] and out[0:10, 0:10].all() and out.sum() == 100


def test_diagonal_pixels_are_connected() -> None:
    mask = np.zeros((6, 6), bool)
    mask[1, 1] = mask[2, 2] = mask[3, 3] = True  # 8-connected: one island of 3
    out, changed = remove_small_regions(mask, 3, "islands")
    assert not changed and out is mask


def test_only_small_islands_keeps_the_largest() -> None:
    mask = np.zeros((10, 10), bool)
    mask[0, 0] = True
    mask[5:7, 5:7] = True
    out, changed = remove_small_regions(mask, 100, "islands")
    assert changed and out.sum() == 4 and out[5:7, 5:7].all()


def test_nothing_small_means_unchanged() -> None:
    mask = np.zeros((10, 10), bool)
    mask[2:8, 2:8] = True
    for mode in ("holes", "islands"):
        out, changed = remove_small_regions(mask, 5, mode)
        assert not changed and out is mask


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        remove_small_regions(np.zeros((2, 2), bool), 1, "both")


def _opencv_remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """The reference generator's OpenCV implementation, as the oracle."""
    fill_holes = mode == "holes"
    working = (mask ^ fill_holes).astype(np.uint8)
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = [i + 1 for i, size in enumerate(sizes) if size < area_thresh]
    if not small:
        return mask, False
    if fill_holes:
        keep = [0] + small
    else:
        keep = [i for i in range(1, n_labels) if i not in set(small)] or [int(np.argmax(sizes)) + 1]
    return np.isin(labels, keep), True


@settings(max_examples=300, deadline=None)
@given(height=st.integers(1, 24), width=st.integers(1, 24), density=st.floats(0.0, 1.0),
       seed=st.integers(0, 2**32 - 1), area=st.integers(1, 40), mode=st.sampled_from(["holes", "islands"]))
def test_same_as_opencv(height: int, width: int, density: float, seed: int, area: int, mode: str) -> None:
    mask = np.random.default_rng(seed).random((height, width)) < density
    out, changed = remove_small_regions(mask, area, mode)
    expected, expected_changed = _opencv_remove_small_regions(mask, area, mode)
    assert changed == expected_changed
    np.testing.assert_array_equal(out, expected)


def test_equal_largest_islands_keep_the_one_opencv_numbers_first() -> None:
    # Two single pixels, both below the threshold: OpenCV numbers components by 2x2 blocks in
    # two-row strips, so (1, 3) comes before (0, 5) although (0, 5) is first in raster order.
    mask = np.zeros((2, 6), bool)
    mask[1, 3] = mask[0, 5] = True
    out, changed = remove_small_regions(mask, 5, "islands")
    assert changed and out[1, 3] and not out[0, 5]
    np.testing.assert_array_equal(out, _opencv_remove_small_regions(mask, 5, "islands")[0])
