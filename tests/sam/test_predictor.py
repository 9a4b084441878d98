import numpy as np
import pytest
import torch

import sam
from sam import transforms


@pytest.fixture()
def predictor(tiny_model, rng):
    p = sam.Predictor(tiny_model)
    p.set_image(rng.integers(0, 256, (75, 101, 3), dtype=np.uint8))
    return p


def test_set_image_records_sizes_and_embedding(predictor):
    assert predictor.original_size == (75, 101)
    assert predictor.input_size == transforms.resized_size(75, 101, 256) == (190, 256)
    assert predictor.features.shape == (1, 256, 16, 16)


def test_predict_shapes_for_multi_and_single_mask(predictor):
    masks, iou, low = predictor.predict(np.array([[50, 30]]), np.array([1]))
    assert masks.shape == (3, 75, 101) and masks.dtype == bool
    assert iou.shape == (3,) and iou.dtype == np.float32
    assert low.shape == (3, 64, 64) and low.dtype == np.float32
    masks1, iou1, low1 = predictor.predict(np.array([[50, 30]]), np.array([1]), multimask_output=False)
    assert masks1.shape == (1, 75, 101) and iou1.shape == (1,)


def test_predict_follows_the_decoder_token_convention(predictor, tiny_model):
    """Points get a padding point; outputs are tokens 1..3 (multi) or 0 (single), upscaled."""
    point = np.array([[50.0, 30.0]])
    logits, iou, low = predictor.predict(point, np.array([1]), return_logits=True)
    coords = transforms.scale_coords(point, (75, 101), 256)
    packed = torch.tensor(np.concatenate([coords, [[0.0, 0.0]]])[None], dtype=torch.float32)
    with torch.no_grad():
        all_low, all_iou = tiny_model.decode(predictor.features, packed, torch.tensor([[1, -1]]))
    np.testing.assert_allclose(low, all_low[0, 1:].numpy(), atol=1e-5)
    np.testing.assert_allclose(iou, all_iou[0, 1:].numpy(), atol=1e-6)
    expected = transforms.upscale_logits(low, (190, 256), (75, 101), 256)
    np.testing.assert_allclose(logits, expected, atol=2e-4)


def test_box_mask_and_refinement_prompts(predictor):
    _, _, low = predictor.predict(box=np.array([10, 10, 60, 50]), multimask_output=False)
    masks, iou, _ = predictor.predict(np.array([[30, 30]]), np.array([0]), box=np.array([10, 10, 60, 50]),
                                      mask_input=low, multimask_output=False)
    assert masks.shape == (1, 75, 101)
    only_mask, _, _ = predictor.predict(mask_input=low[0], multimask_output=True)
    assert only_mask.shape == (3, 75, 101)


def test_batched_prompt_sets_equal_single_predictions(predictor):
    points = np.array([[[10.0, 10.0]], [[60.0, 40.0]], [[90.0, 70.0]]])
    labels = np.ones((3, 1), dtype=np.int64)
    masks, iou, low = predictor.predict_batch(points, labels)
    assert masks.shape == (3, 3, 75, 101)
    for i in range(3):
        m, s, lr = predictor.predict(points[i], labels[i])
        np.testing.assert_allclose(lr, low[i], atol=1e-4)
        np.testing.assert_allclose(s, iou[i], atol=1e-5)


def test_bgr_input_is_flipped_to_rgb(tiny_model, rng):
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    a, b = sam.Predictor(tiny_model), sam.Predictor(tiny_model)
    a.set_image(image)
    b.set_image(image[..., ::-1].copy(), image_format="BGR")
    torch.testing.assert_close(a.features, b.features)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"point_coords": np.array([[1.0, 2.0]])}, "point_labels are required"),
        ({"point_coords": np.array([[1.0, np.nan]]), "point_labels": np.array([1])}, "finite"),
        ({"point_coords": np.array([[1.0, 2.0]]), "point_labels": np.array([5])}, "labels must be"),
        ({"point_coords": np.array([1.0, 2.0]), "point_labels": np.array([1])}, "BxNx2"),
        ({"box": np.array([1.0, 2.0])}, "4 values"),
        ({"mask_input": np.zeros((1, 32, 32))}, "1x64x64"),
        ({}, "at least one prompt"),
    ],
)
def test_bad_prompts_raise_value_errors(predictor, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(**kwargs)


def test_predict_before_set_image_says_what_to_do(tiny_model):
    with pytest.raises(ValueError, match="call set_image"):
        sam.Predictor(tiny_model).predict(np.array([[1, 2]]), np.array([1]))


@pytest.mark.parametrize(
    ("image", "message"),
    [(np.zeros((10, 10), np.uint8), "HxWx3"), (np.zeros((10, 10, 3), np.float32), "uint8"),
     (np.zeros((0, 10, 3), np.uint8), "empty"), ([[1, 2, 3]], "numpy array")],
)
def test_bad_images_raise_value_errors(tiny_model, image, message):
    with pytest.raises(ValueError, match=message):
        sam.Predictor(tiny_model).set_image(image)
