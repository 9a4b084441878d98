from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

import sam
from sam.automatic import OUTPUT_MODES, MaskGenerator
from sam.automatic._reference_like import ReferenceLikeGenerator, compare_annotations

KEYS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
LOWERED = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def _mask(annotation: dict[str, Any]) -> np.ndarray:
    segmentation = annotation["segmentation"]
    if isinstance(segmentation, np.ndarray):
        return segmentation
    rle = segmentation
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    return mask_utils.decode(rle).astype(bool)


def test_sam_exports_the_generator() -> None:
    assert sam.MaskGenerator is MaskGenerator


def test_reference_defaults() -> None:
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(MaskGenerator).parameters.items() if k != "model"}
    assert defaults == {
        "points_per_side": 32, "points_per_batch": 64, "pred_iou_thresh": 0.88, "stability_score_thresh": 0.95,
        "stability_score_offset": 1.0, "box_nms_thresh": 0.7, "crop_n_layers": 0, "crop_nms_thresh": 0.7,
        "crop_overlap_ratio": 512 / 1500, "crop_n_points_downscale_factor": 1, "point_grids": None,
        "min_mask_region_area": 0, "output_mode": "binary_mask",
    }


@pytest.mark.parametrize("output_mode", OUTPUT_MODES)
def test_tiny_model_end_to_end_keys_and_types(noisy_tiny_model: sam.Sam, scene: np.ndarray, output_mode: str) -> None:
    generator = MaskGenerator(noisy_tiny_model, points_per_side=8, box_nms_thresh=1.0, output_mode=output_mode,
                              **LOWERED)
    annotations = generator.generate(scene)
    assert len(annotations) == 8 * 8 * 3  # nothing filtered: thresholds off, NMS at 1.0, one crop
    for a in annotations:
        assert set(a) == KEYS
        assert type(a["area"]) is int and type(a["predicted_iou"]) is float and type(a["stability_score"]) is float
        assert len(a["bbox"]) == 4 and all(type(v) is int for v in a["bbox"])
        assert a["crop_box"] == [0, 0, 128, 96]
        assert len(a["point_coords"]) == 1 and all(type(v) is float for v in a["point_coords"][0])
        mask = _mask(a)
        assert mask.shape == (96, 128) and mask.dtype == bool
        assert a["area"] == int(mask.sum())
        if output_mode == "binary_mask":
            assert isinstance(a["segmentation"], np.ndarray)
        elif output_mode == "coco_rle":
            assert isinstance(a["segmentation"]["counts"], str) and a["segmentation"]["size"] == [96, 128]
        else:
            assert all(type(c) is int for c in a["segmentation"]["counts"])
    # Every grid point (cell centres in image pixels) prompted 3 masks.
    points = {tuple(a["point_coords"][0]) for a in annotations}
    assert points == {((i + 0.5) * 16.0, (j + 0.5) * 12.0) for i in range(8) for j in range(8)}


def test_nms_orders_by_predicted_iou(noisy_tiny_model: sam.Sam, scene: np.ndarray) -> None:
    annotations = MaskGenerator(noisy_tiny_model, points_per_side=8, box_nms_thresh=1.0, **LOWERED).generate(scene)
    scores = [a["predicted_iou"] for a in annotations]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("params", [
    {},
    {"points_per_side": 16, "pred_iou_thresh": 0.8, "stability_score_thresh": 0.9, "points_per_batch": 50},
    {"crop_n_layers": 1, "pred_iou_thresh": 0.8, "stability_score_thresh": 0.8, "output_mode": "uncompressed_rle"},
    {"points_per_side": 12, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2, "min_mask_region_area": 100,
     "output_mode": "coco_rle", **LOWERED},
    {"points_per_side": 12, "min_mask_region_area": 600, "box_nms_thresh": 0.5, "stability_score_offset": 4.0,
     **LOWERED},
])
def test_same_output_as_the_plain_implementation(disc_model: sam.Sam, scene: np.ndarray,
                                                 params: dict[str, Any]) -> None:
    params = {"points_per_side": 8, **params}
    ours = MaskGenerator(disc_model, **params).generate(scene)
    plain = ReferenceLikeGenerator(disc_model, **params).generate(scene)
    assert len(ours) > 0
    assert compare_annotations(ours, plain) is None


@pytest.mark.parametrize("params", [
    {"points_per_side": 6, "box_nms_thresh": 0.95, **LOWERED},
    {"points_per_side": 4, "crop_n_layers": 1, "pred_iou_thresh": 2.0, "stability_score_thresh": 0.5,
     "box_nms_thresh": 1.0, "crop_nms_thresh": 1.0},
])
def test_fast_decoder_same_output_as_the_plain_implementation(noisy_tiny_model: sam.Sam, scene: np.ndarray,
                                                              params: dict[str, Any]) -> None:
    ours = MaskGenerator(noisy_tiny_model, **params).generate(scene)
    plain = ReferenceLikeGenerator(noisy_tiny_model, **params).generate(scene)
    assert len(ours) > 0
    # the fast decoder's scores may differ in float32's last bits on some CPUs (see
    # test_decoding_upscale.py); masks, boxes, points and order must still be identical
    assert compare_annotations(ours, plain, score_rel_tol=1e-5) is None


def test_masks_lie_inside_their_crop_boxes(disc_model: sam.Sam, scene: np.ndarray) -> None:
    annotations = MaskGenerator(disc_model, points_per_side=8, crop_n_layers=2, pred_iou_thresh=0.8,
                                stability_score_thresh=0.8, crop_nms_thresh=1.0).generate(scene)
    crops = {tuple(a["crop_box"]) for a in annotations}
    assert len(crops) > 5  # masks from several layers survive
    for a in annotations:
        x, y, w, h = a["crop_box"]
        mask = _mask(a)
        outside = mask.copy()
        outside[y:y + h, x:x + w] = False
        assert not outside.any()
        bx, by, bw, bh = a["bbox"]
        assert x <= bx and y <= by and bx + bw < x + w and by + bh < y + h
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()] == a["bbox"]
        px, py = a["point_coords"][0]
        assert x <= px < x + w and y <= py < y + h


def test_small_regions_are_removed(disc_model: sam.Sam, scene: np.ndarray) -> None:
    area = 100
    plain = MaskGenerator(disc_model, points_per_side=6, box_nms_thresh=1.0, **LOWERED).generate(scene)
    cleaned = MaskGenerator(disc_model, points_per_side=6, box_nms_thresh=1.0, min_mask_region_area=area,
                            **LOWERED).generate(scene)

    def small_islands(mask: np.ndarray) -> int:
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        return int((stats[1:, cv2.CC_STAT_AREA] < area).sum()) if n > 2 else 0

    assert any(small_islands(_mask(a)) for a in plain)  # token 2 has a small island
    assert not any(small_islands(_mask(a)) for a in cleaned)


def test_progress_reports_points_and_can_stop(disc_model: sam.Sam, scene: np.ndarray) -> None:
    seen: list[tuple[int, int]] = []
    generator = MaskGenerator(disc_model, points_per_side=8, points_per_batch=20, crop_n_layers=1)
    generator.generate(scene, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5 * 64, 5 * 64)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[0] == (20, 320)

    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        generator.generate(scene, progress=stop)


def test_explicit_point_grids(disc_model: sam.Sam, scene: np.ndarray) -> None:
    grid = np.array([[0.25, 0.5], [0.75, 0.5]])
    annotations = MaskGenerator(disc_model, points_per_side=None, point_grids=[grid], box_nms_thresh=1.0,
                                **LOWERED).generate(scene)
    assert {tuple(a["point_coords"][0]) for a in annotations} == {(32.0, 48.0), (96.0, 48.0)}


def test_repeatable(disc_model: sam.Sam, scene: np.ndarray) -> None:
    generator = MaskGenerator(disc_model, points_per_side=8, crop_n_layers=1, pred_iou_thresh=0.8,
                              stability_score_thresh=0.8, output_mode="coco_rle")
    assert compare_annotations(generator.generate(scene), generator.generate(scene)) is None


@pytest.mark.parametrize(("params", "message"), [
    ({"points_per_side": 0}, "points_per_side"),
    ({"points_per_side": 2.5}, "points_per_side"),
    ({"points_per_side": None}, "exactly one of points_per_side and point_grids"),
    ({"point_grids": [np.zeros((4, 2))]}, "exactly one of points_per_side and point_grids"),
    ({"points_per_side": None, "point_grids": [np.zeros((4, 3))]}, r"point_grids\[0\] must be"),
    ({"points_per_side": None, "point_grids": [np.full((4, 2), 1.5)]}, r"in \[0, 1\]"),
    ({"points_per_side": None, "point_grids": [np.zeros((4, 2))], "crop_n_layers": 1}, "one grid per crop layer"),
    ({"points_per_batch": 0}, "points_per_batch"),
    ({"pred_iou_thresh": float("nan")}, "pred_iou_thresh"),
    ({"stability_score_thresh": "high"}, "stability_score_thresh"),
    ({"stability_score_offset": -1.0}, "stability_score_offset"),
    ({"box_nms_thresh": 1.5}, "box_nms_thresh"),
    ({"crop_nms_thresh": -0.1}, "crop_nms_thresh"),
    ({"crop_n_layers": -1}, "crop_n_layers"),
    ({"crop_n_layers": True}, "crop_n_layers"),
    ({"crop_overlap_ratio": 1.0}, "crop_overlap_ratio"),
    ({"crop_n_points_downscale_factor": 0}, "crop_n_points_downscale_factor"),
    ({"crop_n_layers": 3, "points_per_side": 4, "crop_n_points_downscale_factor": 2}, "crop layer 3"),
    ({"min_mask_region_area": -5}, "min_mask_region_area"),
    ({"output_mode": "polygons"}, "output_mode must be one of"),
])
def test_bad_parameters_raise(disc_model: sam.Sam, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MaskGenerator(disc_model, **params)


def test_model_must_be_a_sam() -> None:
    with pytest.raises(ValueError, match="sam.Sam"):
        MaskGenerator(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((10, 10), np.uint8), "HxWx3"),
    (np.zeros((10, 10, 4), np.uint8), "HxWx3"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    ([[0, 0, 0]], "HxWx3"),
])
def test_bad_images_raise(disc_model: sam.Sam, image: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MaskGenerator(disc_model, points_per_side=2).generate(image)
