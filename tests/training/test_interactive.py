import numpy as np
import pytest
import torch

from training.clicks import MASK_ONLY, plan_rounds
from training.interactive import run_episode

S = 32


def rect(y0, y1, x0, x1):
    m = torch.zeros(S, S)
    m[y0:y1, x0:x1] = 1
    return m


class FakeDecoder:
    """Token k predicts a fixed rectangle; token 2 has the highest predicted IoU."""

    def __init__(self):
        self.shapes = [rect(8, 20, 8, 20), rect(4, 12, 4, 12), rect(6, 22, 6, 26), rect(0, 4, 0, 4)]
        self.calls = []

    def __call__(self, coords, labels, mask_input, has_mask):
        b = coords.shape[0]
        self.calls.append((coords.clone(), labels.clone(), None if mask_input is None else mask_input.clone()))
        logits = torch.stack(self.shapes).mul(10).sub(5).expand(b, -1, -1, -1).clone().requires_grad_(True)
        iou = torch.tensor([[0.5, 0.1, 0.9, 0.2]]).expand(b, -1).clone().requires_grad_(True)
        return logits, iou


def test_episode_follows_the_plan_and_clicks_on_errors():
    targets = torch.stack([rect(10, 24, 10, 24), rect(2, 10, 20, 30), rect(5, 15, 5, 28)]).unsqueeze(1)
    valid = [(30, 32), (32, 32), (20, 32)]
    rng = np.random.default_rng(0)
    plan = plan_rounds(np.random.default_rng(5))
    decoder = FakeDecoder()
    result = run_episode(decoder, targets, valid, rng, rounds=plan, first_kinds=["point", "box", "box"])
    assert len(decoder.calls) == 11 and len(result.round_iou) == 11
    assert torch.isfinite(result.loss) and result.loss.requires_grad

    coords0, labels0, mask0 = decoder.calls[0]
    assert mask0 is None
    assert labels0[0].tolist() == [1, -1] and labels0[1].tolist() == [2, 3] and labels0[2].tolist() == [2, 3]
    x, y = coords0[0, 0].long().tolist()
    assert targets[0, 0, y, x] == 1  # the first point lies on the object
    box = coords0[1].reshape(-1)
    assert (box[2:] >= box[:2]).all() and (box - torch.tensor([20.0, 2, 29, 9])).abs().max() <= 20

    # round 1: the point set passes its multimask output with the highest predicted IoU (token 2), the
    # box sets (unambiguous) their single output (token 0); later rounds are single-output for all
    first_passed = torch.stack([decoder.shapes[2], decoder.shapes[0], decoder.shapes[0]])
    passed = [first_passed, *[decoder.shapes[0].expand(3, -1, -1)] * 10]
    for r in range(1, 11):
        coords, labels, mask_in = decoder.calls[r]
        prev_labels = decoder.calls[r - 1][1]
        assert mask_in is not None
        torch.testing.assert_close(mask_in[:, 0], passed[r - 1].mul(10).sub(5))
        if plan[r].kind == MASK_ONLY:
            assert torch.equal(labels, prev_labels)
            continue
        assert labels.shape[1] == prev_labels.shape[1] + 1
        prev_masks = passed[r - 1] > 0.5
        for i in range(3):
            # the newest point: before the padding point (point sets) or before the box corners (box sets)
            new = labels.shape[1] - 2 if i == 0 else labels.shape[1] - 3
            label = int(labels[i, new])
            x, y = coords[i, new].long().tolist()
            gt = targets[i, 0] > 0.5
            h, w = valid[i]
            if label == -1:  # no error left in the valid area
                assert torch.equal(prev_masks[i, :h, :w], gt[:h, :w])
                continue
            assert y < h and x < w
            assert prev_masks[i, y, x] != gt[y, x], "a correction click must lie in the error region"
            assert label == int(gt[y, x])
        # point sets keep the padding point last, box sets the box corners
        assert labels[0, -1] == -1 and labels[1, -2:].tolist() == [2, 3]


def test_episode_is_deterministic_and_validates():
    targets = torch.stack([rect(10, 24, 10, 24)]).unsqueeze(1)
    a = run_episode(FakeDecoder(), targets, [(S, S)], np.random.default_rng(3))
    b = run_episode(FakeDecoder(), targets, [(S, S)], np.random.default_rng(3))
    assert a.loss.item() == b.loss.item() and a.first_kinds == b.first_kinds
    with pytest.raises(ValueError, match="empty"):
        run_episode(FakeDecoder(), torch.zeros(1, 1, S, S), [(S, S)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="valid_sizes"):
        run_episode(FakeDecoder(), targets, [], np.random.default_rng(0))


def test_round_loss_uses_the_multimask_outputs_only_for_ambiguous_rows():
    from torch.nn import functional as F

    from training.interactive import _round_loss
    from training.losses import sam_loss

    torch.manual_seed(0)
    low_res = torch.randn(3, 4, 8, 8)
    iou_pred = torch.rand(3, 4)
    targets = torch.stack([rect(10, 24, 10, 24), rect(2, 10, 20, 30), rect(5, 15, 5, 28)]).unsqueeze(1)
    multi = np.array([True, False, True])
    total, parts, passed, _ = _round_loss(low_res, iou_pred, multi, targets, 1.0)

    def up(x):
        return F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False)

    ambiguous = sam_loss(up(low_res[[0, 2], 1:]), iou_pred[[0, 2], 1:], targets[[0, 2]])
    single = sam_loss(up(low_res[[1], :1]), iou_pred[[1], :1], targets[[1]])
    torch.testing.assert_close(total, (2 * ambiguous.total + single.total) / 3)
    assert parts[0] == pytest.approx((2 * ambiguous.mask.item() + single.mask.item()) / 3)
    top = 1 + iou_pred[[0, 2], 1:].argmax(dim=1)
    torch.testing.assert_close(passed[[0, 2], 0], low_res[[0, 2], top])
    torch.testing.assert_close(passed[1, 0], low_res[1, 0])
