import numpy as np
import pytest

from sam.automatic.crops import generate_crop_boxes, is_box_near_crop_edge, uncrop_boxes, uncrop_masks, uncrop_points


def test_layer_zero_is_the_whole_image() -> None:
    assert generate_crop_boxes((768, 1024), 0, 512 / 1500) == ([[0, 0, 1024, 768]], [0])


def test_one_layer_hand_computed() -> None:
    # overlap = int(512/1500 * 768 * 2/2) = 262; w = ceil((1024 + 262) / 2) = 643; h = ceil((768 + 262) / 2) = 515
    boxes, layers = generate_crop_boxes((768, 1024), 1, 512 / 1500)
    assert boxes == [[0, 0, 1024, 768], [0, 0, 643, 515], [0, 253, 643, 768], [381, 0, 1024, 515],
                     [381, 253, 1024, 768]]
    assert layers == [0, 1, 1, 1, 1]


def test_two_layers_hand_computed() -> None:
    # layer 2: overlap = int(512/1500 * 768 * 2/4) = 131;
    # w = ceil((1024 + 3*131) / 4) = 355; h = ceil((768 + 393) / 4) = 291
    boxes, layers = generate_crop_boxes((768, 1024), 2, 512 / 1500)
    assert layers == [0] + [1] * 4 + [2] * 16
    layer2 = boxes[5:]
    x0s, y0s = [0, 224, 448, 672], [0, 160, 320, 480]
    expected = [[x, y, min(x + 355, 1024), min(y + 291, 768)] for x in x0s for y in y0s]
    assert layer2 == expected
    assert layer2[-1] == [672, 480, 1024, 768]


def test_portrait_uses_the_short_side_for_overlap() -> None:
    # short side 100: overlap = int(0.5 * 100) = 50; w = ceil((100 + 50) / 2) = 75; h = ceil((300 + 50) / 2) = 175
    boxes, _ = generate_crop_boxes((300, 100), 1, 0.5)
    assert boxes[1:] == [[0, 0, 75, 175], [0, 125, 75, 300], [25, 0, 100, 175], [25, 125, 100, 300]]


def test_uncrop_boxes_points_masks() -> None:
    crop = [10, 20, 14, 23]
    boxes = np.array([[0, 0, 3, 2]])
    assert uncrop_boxes(boxes, crop).tolist() == [[10, 20, 13, 22]]
    points = np.array([[0.5, 1.5]], dtype=np.float64)
    assert uncrop_points(points, crop).tolist() == [[10.5, 21.5]]
    masks = np.ones((1, 3, 4), dtype=bool)
    full = uncrop_masks(masks, crop, (30, 40))
    assert full.shape == (1, 30, 40)
    assert full.sum() == 12 and full[0, 20:23, 10:14].all()
    assert uncrop_masks(masks, [0, 0, 4, 3], (3, 4)) is masks


@pytest.mark.parametrize(("box", "near"), [
    ([100, 100, 200, 200], False),  # well inside the crop
    ([0, 100, 200, 200], True),  # touches the crop's left edge, which is inside the image
    ([100, 100, 200, 280], True),  # within 20 px of the crop's bottom edge (crop y1 = 300)
    ([100, 100, 200, 279], False),  # 21 px away
    ([100, 100, 299, 200], False),  # right crop edge is the image's right edge (x1 = 400)
])
def test_near_crop_edge(box: list[int], near: bool) -> None:
    crop = [100, 0, 400, 300]  # crop pixels: 300 wide, 300 high; image 400 x 600
    result = is_box_near_crop_edge(np.array([box]), crop, [0, 0, 400, 600])
    assert result.tolist() == [near]


def test_whole_image_crop_never_cuts() -> None:
    boxes = np.array([[0, 0, 99, 49], [0, 0, 0, 0]])
    assert not is_box_near_crop_edge(boxes, [0, 0, 100, 50], [0, 0, 100, 50]).any()
