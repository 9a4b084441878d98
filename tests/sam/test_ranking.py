import numpy as np

from sam.ranking import rank_by_iou, rank_order


def test_rank_by_iou_sorts_descending_and_is_stable():
    iou = np.array([0.5, 0.9, 0.5, 0.7], dtype=np.float32)
    np.testing.assert_array_equal(rank_order(iou), [1, 3, 0, 2])
    masks = np.arange(4)[:, None, None] * np.ones((4, 2, 2))
    logits = -np.arange(4)[:, None, None] * np.ones((4, 3, 3))
    m, s, lr = rank_by_iou(masks, iou, logits)
    np.testing.assert_array_equal(m[:, 0, 0], [1, 3, 0, 2])
    np.testing.assert_allclose(s, [0.9, 0.7, 0.5, 0.5])
    np.testing.assert_array_equal(lr[:, 0, 0], [-1, -3, 0, -2])
