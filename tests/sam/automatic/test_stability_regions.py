import math

import numpy as np
import pytest
import torch

from sam.automatic.regions import remove_small_regions
from sam.automatic.stability import stability_score


def test_stability_hand_example() -> None:
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0], [2.0, 1.0, -1.0, -2.0]]])
    # > 1: 3, 2 (1.0 is not > 1) -> 2 pixels; > -1: 3, 0.5, -0.5, 2, 1 -> 5 pixels
    score = stability_score(logits, 0.0, 1.0)
    assert score.dtype == torch.float32
    assert score.tolist() == [pytest.approx(2 / 5)]
    assert stability_score(logits, 0.0, 0.0).tolist() == [1.0]


def test_stability_of_an_empty_mask_is_nan() -> None:
    score = stability_score(torch.full((2, 3, 3), -5.0), 0.0, 1.0)
    assert all(math.isnan(v) for v in score.tolist())


def test_stability_batch_shape() -> None:
    logits = torch.randn(2, 3, 8, 9)
    score = stability_score(logits, 0.0, 1.0)
    assert score.shape == (2, 3)
    expected = (logits > 1).sum((-1, -2)).float() / (logits > -1).sum((-1, -2)).float()
    assert torch.equal(score, expected)


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
