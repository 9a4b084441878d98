import math

import pytest
import torch

from training.losses import dice_loss, mask_iou, mask_loss, sam_loss, sigmoid_focal_loss


def sig(x):
    return 1 / (1 + math.exp(-x))


# One mask of two pixels: logits (0, 2), target (1, 0).
LOGITS = torch.tensor([[[[0.0, 2.0]]]])
TARGET = torch.tensor([[[[1.0, 0.0]]]])
# pixel 1: p = 0.5, t = 1: alpha_t = 0.25, (1 - p_t)^2 = 0.25, BCE = ln 2
FOCAL_1 = 0.25 * 0.25 * math.log(2)
# pixel 2: p = sig(2), t = 0: alpha_t = 0.75, (1 - p_t)^2 = sig(2)^2, BCE = ln(1 + e^2)
FOCAL_2 = 0.75 * sig(2) ** 2 * math.log(1 + math.e**2)
FOCAL = (FOCAL_1 + FOCAL_2) / 2  # 0.640440...
DICE = 1 - (2 * 0.5 + 1) / (0.5 + sig(2) + 1 + 1)  # 0.408424...


def test_focal_loss_hand_computed():
    assert FOCAL == pytest.approx(0.640440, abs=1e-6)
    got = sigmoid_focal_loss(LOGITS, TARGET)
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx(FOCAL, rel=1e-6)


def test_dice_loss_hand_computed():
    assert DICE == pytest.approx(0.408424, abs=1e-6)
    assert dice_loss(LOGITS, TARGET).item() == pytest.approx(DICE, rel=1e-6)


def test_mask_loss_is_20_to_1():
    assert mask_loss(LOGITS, TARGET).item() == pytest.approx(20 * FOCAL + DICE, rel=1e-6)


def test_true_iou_thresholds_logits_at_zero():
    logits = torch.tensor([[[[1.0, -1.0], [1.0, 0.0]], [[-5.0, -5.0], [-5.0, -5.0]]]])  # 1x2x2x2
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # candidate 0: predicted {(0,0), (1,0)} (0 is not > 0), target {(0,0), (0,1)}: 1 / 3
    # candidate 1: predicts nothing: 0 / 2
    assert mask_iou(logits, target)[0].tolist() == pytest.approx([1 / 3, 0.0])
    empty = torch.zeros(1, 1, 2, 2)
    assert mask_iou(torch.full((1, 1, 2, 2), -1.0), empty).item() == 1.0


def test_min_loss_selection_backpropagates_only_the_best_mask():
    target = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])  # B=2, 1x1x2 pixels
    logits = torch.tensor(
        [
            [[[-3.0, 3.0]], [[0.0, 2.0]], [[4.0, -4.0]]],  # best: candidate 2
            [[[-4.0, 4.0]], [[0.0, 2.0]], [[4.0, -4.0]]],  # best: candidate 0
        ],
        requires_grad=True,
    )
    iou_pred = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]], requires_grad=True)
    out = sam_loss(logits, iou_pred, target)
    assert out.selected.tolist() == [2, 0]

    per_mask = mask_loss(logits.detach(), target)
    expected_mask = (per_mask[0, 2] + per_mask[1, 0]) / 2
    assert out.mask.item() == pytest.approx(expected_mask.item(), rel=1e-6)
    # the candidate with logits (0, 2) against (1, 0) is the hand-computed case above
    assert per_mask[0, 1].item() == pytest.approx(20 * FOCAL + DICE, rel=1e-6)

    # true IoUs of logits > 0: row 0 -> [0, 0, 1], row 1 -> [1, 1, 0]
    assert out.true_iou.tolist() == [[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]]
    expected_iou = ((0.1**2 + 0.2**2 + 0.7**2) + (0.1**2 + 0.2**2 + 0.7**2)) / 6
    assert out.iou.item() == pytest.approx(expected_iou, rel=1e-6)
    assert out.total.item() == pytest.approx(expected_mask.item() + expected_iou, rel=1e-6)

    out.total.backward()
    grad = logits.grad.abs().flatten(2).sum(dim=2)
    assert grad[0, 2] > 0 and grad[1, 0] > 0
    assert grad[0, 0] == 0 and grad[0, 1] == 0 and grad[1, 1] == 0 and grad[1, 2] == 0
    assert (iou_pred.grad != 0).all()  # the IoU head learns from every candidate


def test_shape_errors_say_what_to_fix():
    with pytest.raises(ValueError, match="Bx1xhxw"):
        sam_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="iou_pred"):
        sam_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1), torch.zeros(2, 1, 4, 4))
