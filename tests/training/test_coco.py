import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from training.data.coco import CocoDataset


@pytest.fixture()
def tiny_coco(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(images / "a.png")
    Image.fromarray(np.full((10, 12), 77, np.uint8)).save(images / "gray.png")  # grayscale file
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "empty.png")

    rle_mask = np.zeros((20, 30), np.uint8, order="F")
    rle_mask[2:6, 20:25] = 1
    rle = mask_utils.encode(rle_mask)
    rle["counts"] = rle["counts"].decode("ascii")
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
            {"id": 2, "file_name": "gray.png", "height": 10, "width": 12},
            {"id": 3, "file_name": "empty.png", "height": 8, "width": 8},
        ],
        "categories": [{"id": 5, "name": "thing"}, {"id": 6, "name": "other"}],
        "annotations": [
            # polygon: the rectangle x 4..10, y 3..9
            {"id": 10, "image_id": 1, "category_id": 5, "iscrowd": 0, "area": 36, "bbox": [4, 3, 6, 6],
             "segmentation": [[4, 3, 10, 3, 10, 9, 4, 9]]},
            {"id": 11, "image_id": 1, "category_id": 6, "iscrowd": 0, "area": 20, "bbox": [20, 2, 5, 4],
             "segmentation": rle},
            {"id": 12, "image_id": 1, "category_id": 5, "iscrowd": 1, "area": 20, "bbox": [0, 0, 5, 4],
             "segmentation": rle},
            {"id": 13, "image_id": 2, "category_id": 6, "iscrowd": 0, "area": 4, "bbox": [1, 1, 2, 2],
             "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]]},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return images, path, rle_mask


def test_loads_polygon_and_rle_masks(tiny_coco):
    images, path, rle_mask = tiny_coco
    ds = CocoDataset(images, path)
    assert len(ds) == 2  # the image without annotations is skipped
    sample = ds[0]
    assert sample.image.shape == (20, 30, 3) and sample.image.dtype == np.uint8
    assert sample.image[0, 0].tolist() == [200, 0, 0]
    assert sample.masks.shape == (2, 20, 30) and sample.masks.dtype == bool
    assert sample.annotation_ids.tolist() == [10, 11]  # crowd annotation 12 left out
    assert sample.category_ids.tolist() == [5, 6]
    np.testing.assert_array_equal(sample.masks[1], rle_mask.astype(bool))
    ys, xs = np.nonzero(sample.masks[0])
    assert 3 <= ys.min() <= 4 and 8 <= ys.max() <= 9 and 4 <= xs.min() <= 5 and 9 <= xs.max() <= 10
    np.testing.assert_array_equal(sample.boxes[1], [20, 2, 25, 6])
    gray = ds[1]
    assert gray.image.shape == (10, 12, 3) and (gray.image == 77).all()


def test_filters(tiny_coco):
    images, path, _ = tiny_coco
    assert CocoDataset(images, path, include_crowd=True)[0].annotation_ids.tolist() == [10, 11, 12]
    assert CocoDataset(images, path, category_ids=[6])[0].annotation_ids.tolist() == [11]
    assert len(CocoDataset(images, path, skip_empty=False)) == 3
    assert CocoDataset(images, path, min_area=25)[0].annotation_ids.tolist() == [10]


def test_errors_say_what_to_fix(tiny_coco, tmp_path):
    images, path, _ = tiny_coco
    with pytest.raises(ValueError, match="does not exist"):
        CocoDataset(tmp_path / "nope", path)
    data = json.loads(path.read_text())
    data["images"][0]["height"] = 21
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="annotations say 21x30"):
        CocoDataset(images, bad)[0]
    (images / "a.png").unlink()
    with pytest.raises(ValueError, match="missing"):
        CocoDataset(images, path)[0]
