import numpy as np
import pytest

from training.clicks import (
    BACKGROUND,
    CLICK,
    FIRST,
    FOREGROUND,
    MASK_ONLY,
    farthest_from_boundary,
    first_eval_click,
    mask_box,
    next_eval_click,
    noisy_box,
    plan_rounds,
    sample_correction_click,
    sample_first_prompt,
)


def random_blobs(rng, shape=(48, 64), n=4):
    mask = np.zeros(shape, bool)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(n):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(3, 15)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    return mask


def test_plan_has_first_round_then_two_mask_only_rounds():
    middles = set()
    for seed in range(200):
        rounds = plan_rounds(np.random.default_rng(seed))
        assert len(rounds) == 11
        assert [r.index for r in rounds] == list(range(11))
        assert rounds[0].kind == FIRST and rounds[0].multimask and not rounds[0].feeds_mask
        mask_only = [r.index for r in rounds if r.kind == MASK_ONLY]
        assert len(mask_only) == 2 and mask_only[-1] == 10 and 1 <= mask_only[0] <= 9
        middles.add(mask_only[0])
        assert sum(r.kind == CLICK for r in rounds) == 8
        assert all(r.feeds_mask and not r.multimask for r in rounds[1:])
    assert middles == set(range(1, 10))  # every middle round can be the mask-only one
    with pytest.raises(ValueError, match="num_rounds"):
        plan_rounds(np.random.default_rng(0), 2)


def test_correction_clicks_fall_in_the_error_region_with_the_right_label():
    rng = np.random.default_rng(0)
    for _ in range(300):
        gt, pred = random_blobs(rng), random_blobs(rng)
        click = sample_correction_click(rng, pred, gt)
        if not (gt ^ pred).any():
            assert click is None
            continue
        x, y = int(click.x), int(click.y)
        assert (gt ^ pred)[y, x]
        assert click.label == (FOREGROUND if gt[y, x] and not pred[y, x] else BACKGROUND)
    gt = random_blobs(rng)
    assert sample_correction_click(rng, gt.copy(), gt) is None


def test_correction_clicks_are_uniform_over_the_error_region():
    gt = np.zeros((40, 40), bool)
    gt[:, :15] = True  # 600 px
    pred = np.zeros_like(gt)
    pred[:, :10] = True  # false negatives: 40 x 5 = 200 px
    pred[:10, 30:40] = True  # false positives: 100 px
    rng = np.random.default_rng(1)
    labels = [sample_correction_click(rng, pred, gt).label for _ in range(3000)]
    assert np.mean(labels) == pytest.approx(2 / 3, abs=0.03)


def test_first_prompt_point_or_box_with_equal_chance():
    rng = np.random.default_rng(2)
    gt = random_blobs(rng)
    kinds = []
    for _ in range(2000):
        prompt = sample_first_prompt(rng, gt)
        kinds.append(prompt.kind)
        if prompt.kind == "point":
            assert prompt.point.label == FOREGROUND and gt[int(prompt.point.y), int(prompt.point.x)]
        else:
            assert prompt.box.shape == (4,)
    assert kinds.count("point") / len(kinds) == pytest.approx(0.5, abs=0.04)
    with pytest.raises(ValueError, match="empty"):
        sample_first_prompt(rng, np.zeros((4, 4), bool), "point")


def test_box_noise_is_bounded_and_scaled_by_side():
    mask = np.zeros((300, 400), bool)
    mask[100:150, 50:350] = True  # 300 wide, 50 high
    box = mask_box(mask)
    np.testing.assert_array_equal(box, [50, 100, 349, 149])
    rng = np.random.default_rng(3)
    noisy = np.stack([noisy_box(rng, box, mask.shape) for _ in range(4000)])
    delta = noisy - box
    assert np.abs(delta).max() <= 20.0 + 1e-9
    # height 50 -> std 5 px on y; width 300 -> std capped at 20 px, truncated at 20 px
    assert delta[:, [1, 3]].std() == pytest.approx(5.0, rel=0.08)
    assert 9.0 < delta[:, [0, 2]].std() < 12.5  # a unit normal truncated at +-1 std has std 0.54
    assert (noisy[:, 0] <= noisy[:, 2]).all() and (noisy[:, 1] <= noisy[:, 3]).all()
    # boxes at the image border stay inside the image
    edge = np.zeros((30, 30), bool)
    edge[:5, :5] = True
    out = np.stack([noisy_box(rng, mask_box(edge), edge.shape) for _ in range(500)])
    assert out.min() >= 0 and out.max() <= 29


def test_first_eval_click_is_farthest_from_boundary():
    gt = np.zeros((40, 60), bool)
    gt[5:16, 10:51] = True  # 11 rows: the centre row is 10
    click = first_eval_click(gt)
    assert click.label == FOREGROUND and click.y == 10 and 15 <= click.x <= 45
    # the image border is a boundary too
    border = np.zeros((20, 20), bool)
    border[:, :9] = True
    x, y, dist = farthest_from_boundary(border)
    assert x == 4 and dist == pytest.approx(5.0)


def test_next_eval_click_targets_the_largest_error_region():
    gt = np.zeros((50, 50), bool)
    gt[10:40, 10:40] = True
    pred = gt.copy()
    pred[10:40, 30:40] = False  # false negative strip 30x10 (300 px)
    pred[0:5, 0:5] = True  # false positive 25 px
    click = next_eval_click(pred, gt)
    assert click.label == FOREGROUND
    assert 14 <= click.y <= 35 and click.x in (34, 35)  # 5 px from the strip's long sides
    pred2 = gt.copy()
    pred2[40:50, 0:50] = True  # false positive band of 500 px
    pred2[20:22, 20:22] = False  # false negative of 4 px
    click = next_eval_click(pred2, gt)
    assert click.label == BACKGROUND and 40 <= click.y <= 49 and click.y in (44, 45)
    assert next_eval_click(gt, gt) is None


def test_validation_messages():
    with pytest.raises(ValueError, match="same shape"):
        sample_correction_click(np.random.default_rng(0), np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="HxW"):
        first_eval_click(np.zeros((2, 3, 3), bool))
    with pytest.raises(ValueError, match="empty"):
        mask_box(np.zeros((3, 3), bool))
