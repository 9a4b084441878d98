import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sam.automatic.generator import nms_reference_order
from sam.automatic.nms import REFERENCE_VANILLA_MIN_BOXES, nms, pairwise_iou


def _greedy(boxes: list[list[float]], scores: list[float], threshold: float) -> list[int]:
    """The textbook algorithm, one pair at a time, in float32 like torchvision's kernel."""
    b = np.array(boxes, dtype=np.float32)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept: list[int] = []
    for i in order:
        if all(float(pairwise_iou(b[i:i + 1], b[k:k + 1])[0, 0]) <= threshold or
               np.isnan(pairwise_iou(b[i:i + 1], b[k:k + 1])[0, 0]) for k in kept):
            kept.append(i)
    return kept


coordinate = st.integers(0, 40)


@st.composite
def box_sets(draw: st.DrawFn) -> tuple[list[list[float]], list[float]]:
    n = draw(st.integers(1, 30))
    boxes = []
    for _ in range(n):
        x0, y0 = draw(coordinate), draw(coordinate)
        boxes.append([x0, y0, x0 + draw(st.integers(0, 25)), y0 + draw(st.integers(0, 25))])
    scores = draw(st.lists(st.sampled_from([0.1, 0.5, 0.5, 0.9, 1.0]), min_size=n, max_size=n))  # many ties
    return boxes, scores


@settings(max_examples=150, deadline=None)
@given(data=box_sets(), threshold=st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]))
def test_nms_properties(data: tuple[list[list[float]], list[float]], threshold: float) -> None:
    boxes, scores = data
    b, s = np.array(boxes, dtype=np.float32), np.array(scores, dtype=np.float32)
    keep = nms(b, s, threshold).tolist()
    # The best box (first index among equal scores) is always kept, first.
    best = min(range(len(scores)), key=lambda i: (-scores[i], i))
    assert keep[0] == best
    # Highest score first; equal scores keep index order (stable).
    assert keep == sorted(keep, key=lambda i: (-scores[i], i))
    # No kept pair overlaps above the threshold.
    iou = pairwise_iou(b[keep], b[keep])
    off_diagonal = ~np.eye(len(keep), dtype=bool)
    assert not (iou[off_diagonal] > threshold).any()
    # Every dropped box overlaps a kept box that comes before it.
    rank = {i: r for r, i in enumerate(sorted(range(len(scores)), key=lambda i: (-scores[i], i)))}
    for j in set(range(len(scores))) - set(keep):
        assert any(rank[k] < rank[j] and float(pairwise_iou(b[k:k + 1], b[j:j + 1])[0, 0]) > threshold for k in keep)
    # Same as the one-pair-at-a-time algorithm.
    assert keep == _greedy(boxes, scores, threshold)


def test_hand_example() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.5, 0.9], dtype=np.float32)
    # 1 (0.9) suppresses 0 (IoU 81/119 = 0.68 > 0.5) and 3; 2 is far away.
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    # At 0.7, 0 and 3 survive 1, but 3 (same score as 1, later index) comes before 0 and suppresses it.
    assert nms(boxes, scores, 0.7).tolist() == [1, 3, 2]


def test_threshold_is_compared_as_a_double() -> None:
    # IoU 3/5 = 0.6 in float32 is 0.60000002384; torchvision compares it with the double 0.6 and drops it.
    boxes = np.array([[0, 0, 4, 1], [1, 0, 5, 1]], dtype=np.float32)
    assert float(pairwise_iou(boxes[:1], boxes[1:])[0, 0]) > 0.6
    assert nms(boxes, np.array([1.0, 0.5]), 0.6).tolist() == [0]


def test_zero_area_boxes_do_not_suppress_each_other() -> None:
    boxes = np.zeros((3, 4))
    assert nms(boxes, np.array([0.3, 0.2, 0.1]), 0.5).tolist() == [0, 1, 2]


def test_empty_input() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_many_boxes_use_torchvisions_per_category_order() -> None:
    n = REFERENCE_VANILLA_MIN_BOXES + 99
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 2000, (n,), generator=generator).float()
    boxes = torch.stack([x0, torch.zeros(n), x0 + 5, torch.full((n,), 5.0)], dim=1)
    scores = torch.randint(0, 3, (n,), generator=generator).float()  # heavy ties
    greedy = torch.from_numpy(nms(boxes.numpy(), scores.numpy(), 0.5))
    ordered = torch.from_numpy(nms_reference_order(boxes.numpy(), scores.numpy(), 0.5))
    assert sorted(ordered.tolist()) == sorted(greedy.tolist())
    ascending = torch.sort(greedy).values
    assert torch.equal(ordered, ascending[scores[ascending].sort(descending=True)[1]])
    assert (scores[ordered][1:] <= scores[ordered][:-1]).all()
    few = slice(0, REFERENCE_VANILLA_MIN_BOXES - 1)
    b, s = boxes[few].numpy(), scores[few].numpy()
    assert np.array_equal(nms_reference_order(b, s, 0.5), nms(b, s, 0.5))
