import numpy as np
import pytest
import torch
from PIL import Image

from sam import transforms


@pytest.mark.parametrize(
    ("size", "expected"),
    [((768, 1024), (768, 1024)), ((333, 517), (165, 256)), ((517, 333), (256, 165)), ((1, 7), (37, 256)),
     ((255, 255), (256, 256)), ((3, 2), (256, 171))],
)
def test_resized_size_rounds_half_up_on_odd_sizes(size, expected):
    image_size = 1024 if size == (768, 1024) else 256
    assert transforms.resized_size(*size, image_size) == expected


def test_resize_image_is_pil_bilinear_on_uint8(rng):
    image = rng.integers(0, 256, (333, 517, 3), dtype=np.uint8)
    out = transforms.resize_image(image, 256)
    expected = np.asarray(Image.fromarray(image).resize((256, 165), Image.Resampling.BILINEAR))
    assert out.dtype == np.uint8 and out.shape == (165, 256, 3)
    np.testing.assert_array_equal(out, expected)


def test_resize_image_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        transforms.resize_image(np.zeros((10, 10), np.uint8), 256)


def test_scale_coords_and_boxes_by_per_axis_ratio():
    # 333x517 -> 165x256: x scales by 256/517, y by 165/333.
    coords = transforms.scale_coords(np.array([[517.0, 333.0], [10.0, 20.0]]), (333, 517), 256)
    np.testing.assert_allclose(coords, [[256.0, 165.0], [10 * 256 / 517, 20 * 165 / 333]])
    boxes = transforms.scale_boxes(np.array([10.0, 20.0, 517.0, 333.0]), (333, 517), 256)
    np.testing.assert_allclose(boxes, [10 * 256 / 517, 20 * 165 / 333, 256.0, 165.0])


def _torch_postprocess(low_res, input_size, original_size, image_size):
    x = torch.from_numpy(low_res)[None]
    x = torch.nn.functional.interpolate(x, (image_size, image_size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    return torch.nn.functional.interpolate(x, original_size, mode="bilinear", align_corners=False)[0].numpy()


@pytest.mark.parametrize("original", [(333, 517), (517, 333), (256, 256), (77, 1000), (1000, 77), (40, 50)])
def test_numpy_upscale_equals_torch_bilinear_postprocessing(rng, original):
    low_res = (rng.standard_normal((3, 64, 64)) * 20).astype(np.float32)
    input_size = transforms.resized_size(*original, 256)
    ours = transforms.upscale_logits(low_res, input_size, original, 256)
    ref = _torch_postprocess(low_res, input_size, original, 256)
    assert ours.shape == (3, *original) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-4, rtol=0)
    decided = np.abs(ref) > 1e-2
    np.testing.assert_array_equal((ours > 0)[decided], (ref > 0)[decided])
