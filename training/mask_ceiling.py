"""How well the model's low-res mask format can represent ground-truth masks (an upper reference).

The decoder predicts ``L x L`` low-res logits over the padded ``S x S`` input frame (``L = 4g``; 64
for ``sam_small``), which the model upscales bilinearly and thresholds at 0. This module fits such
a logit grid directly to each ground-truth mask (Adam on a soft IoU through the same bilinear
upscaling, starting from the area average) and reports the IoU the fitted grid reaches. The result
is what a perfect decoder could reach with this mask format; it is a lower bound on that ceiling
(the fit is local), which is enough to show when a quality goal is within the format's reach.

CLI (synthetic scenes at the model's input size)::

    python -m training.mask_ceiling --split test --num-images 50 --image-size 256 --low-res 64
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from training.losses import mask_iou


def fit_low_res(masks: np.ndarray, image_size: int, low_res: int, steps: int = 150) -> np.ndarray:
    """``MxHxW`` bool masks of one image (``H, W <= image_size``, already at input scale) -> ``M``
    IoUs of the best-fitting ``low_res x low_res`` logit grids after upscaling and thresholding."""
    m, h, w = masks.shape
    if max(h, w) > image_size:
        raise ValueError(f"masks of {h}x{w} do not fit the {image_size} px input frame; resize them first")
    gt = torch.zeros(m, 1, image_size, image_size)
    gt[:, 0, :h, :w] = torch.from_numpy(np.asarray(masks, dtype=np.float32))
    logits = ((F.interpolate(gt, size=(low_res, low_res), mode="area") - 0.5) * 8).requires_grad_(True)
    target = gt[:, :, :h, :w]
    opt = torch.optim.Adam([logits], lr=0.2)

    def upscale(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)[:, :, :h, :w]

    for _ in range(steps):
        p = torch.sigmoid(4 * upscale(logits))
        soft_iou = (p * target).sum((1, 2, 3)) / (p + target - p * target).sum((1, 2, 3))
        opt.zero_grad()
        (1 - soft_iou).sum().backward()
        opt.step()
    with torch.no_grad():
        return mask_iou(upscale(logits), target)[:, 0].numpy()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.mask_ceiling", description=__doc__.split("\n\n")[0])
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--num-images", type=int, default=50)
    p.add_argument("--image-size", type=int, default=256, help="model input size S (scenes are drawn at it)")
    p.add_argument("--low-res", type=int, default=64, help="side L of the low-res logit grid (4x the embedding grid)")
    p.add_argument("--steps", type=int, default=150, help="Adam steps per image")
    args = p.parse_args(argv)
    from training.data.synthetic import LEVEL_NAMES, SceneConfig, SyntheticDataset

    ious, levels = [], []
    for scene in SyntheticDataset(args.split, args.num_images, SceneConfig(long_side=args.image_size)):
        ious += fit_low_res(scene.masks, args.image_size, args.low_res, args.steps).tolist()
        levels += scene.levels.tolist()
    arr = np.asarray(ious)
    report: dict[str, Any] = {
        "objects": arr.size,
        "miou": float(arr.mean()),
        "share_iou_at_least_0.90": float((arr >= 0.9).mean()),
        "share_iou_at_least_0.85": float((arr >= 0.85).mean()),
    }
    lv = np.asarray(levels)
    report["by_level_miou"] = {name: float(arr[lv == k].mean())
                               for k, name in enumerate(LEVEL_NAMES) if (lv == k).any()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
