"""Automatic mask generation on this CPU: ``sam.MaskGenerator`` against a plain implementation of the
same algorithm, in one process, on the same random-weight model and image (a benchmark, not a test).

The baseline is ``sam.automatic._reference_like.ReferenceLikeGenerator``: it runs the steps the way
the reference generator does (``Sam.decode`` on the whole point batch, every multimask output
upscaled to the image before the IoU filter, per-mask RLE and edge checks). Both run alternately;
their outputs must be identical (count, order, segmentations, boxes, points, crop boxes; predicted IoU
and stability score to a relative 1e-5, float32 rounding of a differently organised decode) or
the benchmark exits with an error. Prints the medians of ``--repeats`` runs and the ratio
ours / baseline (lower is better), per configuration:

- ``defaults``: the reference parameters. With random weights almost no predicted IoU passes 0.88,
  so this measures the decoder and what is done before the IoU filter.
- ``lowered``: ``pred_iou_thresh=0, stability_score_thresh=0``: every mask (3 per point) goes through
  upscaling, stability, boxes, RLE and NMS (random-weight masks overlap, so few survive the NMS).
- ``lowered_no_nms`` (on request): as ``lowered`` with ``box_nms_thresh=1.0`` and RLE output, so that
  every mask reaches the output and is compared.

    python bench/bench_automatic.py [--model vit_b] [--points-per-side 32] [--repeats 1]
    python bench/bench_automatic.py --model tiny --points-per-side 16 --repeats 3   # a quick run
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

import sam
from sam.automatic._reference_like import ReferenceLikeGenerator, compare_annotations, relative_difference

CONFIGS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "lowered": {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
    # Not run by default: every mask survives to the output, so the comparison covers all of them
    # (RLE output: 3 masks per point as HxW arrays would not fit in memory at 32 points per side).
    "lowered_no_nms": {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0,
                       "output_mode": "uncompressed_rle"},
}


def scene(height: int, width: int) -> np.ndarray:
    """A deterministic RGB test image: a colour gradient with a few flat shapes and mild noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                      np.full_like(x, 96)], axis=-1).astype(np.int32)
    for _ in range(12):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        r = int(rng.integers(min(height, width) // 20, min(height, width) // 5))
        colour = rng.integers(0, 256, 3)
        if rng.random() < 0.5:
            image[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = colour
        else:
            image[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = colour
    image += rng.integers(-8, 9, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


# ours decodes the point batch differently (image-side attention shared across points), so on
# large models predicted IoU and stability may differ from the baseline's in float32's last bits
SCORE_REL_TOL = 1e-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b", help="registry name or JSON config (random weights)")
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant and configuration")
    parser.add_argument("--configs", default="defaults,lowered", help=f"comma-separated, from {sorted(CONFIGS)}")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = sam.build_model(args.model)
    image = scene(args.height, args.width)
    print(f"model {args.model}, image {args.height}x{args.width}, points_per_side {args.points_per_side}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    predictor = sam.Predictor(model)
    encoder_s, _ = timed(predictor.set_image, image)
    print(f"encoder (set_image, once): {encoder_s:.1f} s", flush=True)

    for name in args.configs.split(","):
        params = {"points_per_side": args.points_per_side, **CONFIGS[name]}
        times: dict[str, list[float]] = {"baseline": [], "ours": []}
        count, score_diff = 0, 0.0
        baseline, generator = ReferenceLikeGenerator(model, **params), sam.MaskGenerator(model, **params)
        for _ in range(args.repeats):
            base_s, base_out = timed(baseline.generate, image)
            ours_s, ours_out = timed(generator.generate, image)
            difference = compare_annotations(ours_out, base_out, score_rel_tol=SCORE_REL_TOL)
            if difference is not None:
                raise SystemExit(f"{name}: outputs differ from the baseline: {difference}")
            times["baseline"].append(base_s)
            times["ours"].append(ours_s)
            count = len(ours_out)
            score_diff = max([score_diff] + [relative_difference(a[k], b[k])
                                             for a, b in zip(ours_out, base_out, strict=True)
                                             for k in ("predicted_iou", "stability_score")])
            print(f"  {name}: baseline {base_s:.1f} s, ours {ours_s:.1f} s", flush=True)
        base = statistics.median(times["baseline"])
        ours = statistics.median(times["ours"])
        same = "identical outputs" if score_diff == 0 else f"identical masks, scores within {score_diff:.1e} (relative)"
        print(f"{name}: {count} masks, {same}; baseline {base:.1f} s, ours {ours:.1f} s, "
              f"ratio {ours / base:.2f} (median of {args.repeats})", flush=True)


if __name__ == "__main__":
    main()
