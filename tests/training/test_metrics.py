import math

import numpy as np
import pytest

from training.metrics import average_ranks, iou, mean_iou, mean_noc, number_of_clicks, spearman


def test_iou_on_known_masks():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 px
    b[2:6, 0:5] = True  # 20 px, overlap rows 2-3: 10 px
    assert iou(a, b) == pytest.approx(10 / 30)
    assert iou(a, a) == 1.0
    assert iou(a, np.zeros_like(a)) == 0.0
    assert iou(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert mean_iou([iou(a, b), 1.0]) == pytest.approx((1 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="same shape"):
        iou(a, np.zeros((10, 11), bool))
    with pytest.raises(ValueError, match="at least one"):
        mean_iou([])


def test_noc_counts_clicks_to_threshold_and_caps_at_20():
    curve = [0.5, 0.8, 0.86, 0.89, 0.95]
    assert number_of_clicks(curve, 0.85) == 3
    assert number_of_clicks(curve, 0.90) == 5
    assert number_of_clicks([0.92], 0.90) == 1
    never = [0.5] * 25
    assert number_of_clicks(never, 0.85) == 20
    assert number_of_clicks([0.1] * 20 + [0.99], 0.9) == 20  # a hit after click 20 does not count
    assert number_of_clicks([0.1] * 3, 0.9) == 20  # a short curve that never reaches it counts 20
    assert mean_noc([curve, never], 0.85) == pytest.approx((3 + 20) / 2)
    with pytest.raises(ValueError, match="threshold"):
        number_of_clicks(curve, 85)


def test_average_ranks_and_spearman_with_ties():
    np.testing.assert_array_equal(average_ranks([10, 20, 20, 5]), [2, 3.5, 3.5, 1])
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # hand computed: ranks x = (1, 2, 3, 4), ranks y = (1, 3, 2, 4) -> 1 - 6*2 / (4*15) = 0.8
    assert spearman([0.1, 0.2, 0.3, 0.4], [5, 7, 6, 9]) == pytest.approx(0.8)
    # ties: x ranks (1.5, 1.5, 3), y ranks (1, 2, 3); centred (-.5, -.5, 1) . (-1, 0, 1) = 1.5,
    # norms sqrt(1.5) * sqrt(2) -> 1.5 / sqrt(3)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / math.sqrt(3))
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2], [1, 2, 3])
