"""Simulated clicks: SAM's interactive training rounds and the literature's evaluation clicks.

Frames: masks are ``HxW`` bool arrays in one pixel frame (row ``y``, column ``x``). Clicks and
boxes use the same frame: a click is ``(x, y)`` = (column, row) of a pixel; a box is XYXY with
inclusive pixel indices (``x1`` is the last column of the object, as SAM's ``mask_to_box``).
To prompt the model, express them in its resized frame (for a scene drawn at the model's
``image_size`` the two frames coincide).

Training (SAM, Kirillov et al. 2023, appendix "Training algorithm"): 11 rounds per object.

- Round 1: a foreground point sampled uniformly from the ground-truth mask, or the ground-truth
  box with noise, each with probability 1/2. Box noise: per coordinate, normal with standard
  deviation 10% of the box side (width for x, height for y) but at most 20 px, truncated to
  +-20 px, so a corner never moves more than 20 px. A lone point is ambiguous: multimask output
  (the 3 outputs, lowest loss trained). A box is not (SAM predicts one mask once more than one
  prompt point is given, and a box is two): single-mask output, the token the evaluation and the
  service read for a box.
- Later rounds: a point sampled uniformly from the error region of the previous prediction
  (false negative -> foreground point, false positive -> background point); the previous round's
  low-res logits are the mask prompt (where several masks were predicted, the one with the highest
  predicted IoU); single-mask output.
- Two of the later rounds add no point and feed only the mask: one at random among the middle
  rounds (2..10) and the last one.

:func:`plan_rounds` is the pure round planner and :func:`sample_correction_click` the next-click
sampler; :mod:`training.interactive` runs the loop with a model.

Evaluation (Xu et al. 2016; as RITM and SAM evaluate): the first click at the point of the
object farthest from its boundary; each next click at the point farthest from the boundary of the
largest error region (connected component by area, false negatives and false positives
considered together), labelled foreground for a false negative and background for a false
positive. The image border counts as boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FOREGROUND, BACKGROUND = 1, 0
NUM_ROUNDS = 11
BOX_NOISE_FRACTION = 0.1
MAX_BOX_NOISE_PX = 20.0

FIRST, CLICK, MASK_ONLY = "first", "click", "mask_only"


@dataclass(frozen=True)
class Click:
    """A click at pixel ``(x, y)`` (column, row) with label 1 (foreground) or 0 (background)."""

    x: float
    y: float
    label: int


@dataclass(frozen=True)
class Round:
    """One round of simulated interaction.

    ``kind``: ``first`` (point or box), ``click`` (one new correction point) or ``mask_only`` (no new
    point). ``multimask``: predict the 3 multimask outputs for a point-only prompt (else, and for a
    box, the single output).
    ``feeds_mask``: the previous round's logits are the mask prompt.
    """

    index: int
    kind: str
    multimask: bool
    feeds_mask: bool


@dataclass(frozen=True)
class FirstPrompt:
    """Round 1's prompt: ``kind`` ``point`` (``point`` set) or ``box`` (``box`` XYXY float set)."""

    kind: str
    point: Click | None = None
    box: np.ndarray | None = None


def _check_mask(name: str, mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be an HxW mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def plan_rounds(rng: np.random.Generator, num_rounds: int = NUM_ROUNDS) -> list[Round]:
    """The rounds of one interactive training episode: round 0 the first prompt (multimask for a
    point), one random middle round (1..num_rounds-2, 0-based) and the last round mask-only, the others one
    correction click each; every round after the first feeds the previous logits."""
    if num_rounds < 3:
        raise ValueError(f"num_rounds must be >= 3 (first, a middle mask-only round, the last), got {num_rounds}")
    middle = int(rng.integers(1, num_rounds - 1))
    rounds = [Round(0, FIRST, multimask=True, feeds_mask=False)]
    for i in range(1, num_rounds):
        kind = MASK_ONLY if i in (middle, num_rounds - 1) else CLICK
        rounds.append(Round(i, kind, multimask=False, feeds_mask=True))
    return rounds


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight XYXY box of a non-empty ``HxW`` mask, inclusive pixel indices, float64 ``[4]``."""
    mask = _check_mask("mask", mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty: a box needs at least one foreground pixel")
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def noisy_box(rng: np.random.Generator, box: np.ndarray, image_size: tuple[int, int],
              fraction: float = BOX_NOISE_FRACTION, max_px: float = MAX_BOX_NOISE_PX) -> np.ndarray:
    """Jitters an XYXY box: each coordinate moves by a normal draw with std ``fraction`` of the box
    side (width for x, height for y) capped at ``max_px``, truncated to ``+-max_px``; the result is
    clipped to the ``(H, W)`` image and kept ordered (x0 <= x1, y0 <= y1)."""
    box = np.asarray(box, dtype=np.float64).reshape(4)
    h, w = image_size
    sides = np.array([box[2] - box[0] + 1, box[3] - box[1] + 1] * 2)
    std = np.minimum(fraction * sides[[0, 1, 0, 1]], max_px)
    noise = rng.normal(0.0, 1.0, 4) * std
    for _ in range(32):  # truncate by redrawing the few coordinates beyond the cap
        bad = np.abs(noise) > max_px
        if not bad.any():
            break
        noise[bad] = rng.normal(0.0, 1.0, int(bad.sum())) * std[bad]
    noise = np.clip(noise, -max_px, max_px)
    out = box + noise
    out[[0, 2]] = np.clip(out[[0, 2]], 0, w - 1)
    out[[1, 3]] = np.clip(out[[1, 3]], 0, h - 1)
    x0, x1 = sorted(out[[0, 2]])
    y0, y1 = sorted(out[[1, 3]])
    return np.array([x0, y0, x1, y1])


def sample_point(rng: np.random.Generator, region: np.ndarray) -> tuple[int, int] | None:
    """A pixel ``(x, y)`` drawn uniformly from the True pixels of ``region`` (None if empty)."""
    flat = np.flatnonzero(region)
    if flat.size == 0:
        return None
    idx = int(flat[rng.integers(flat.size)])
    y, x = divmod(idx, region.shape[1])
    return x, y


def sample_first_prompt(rng: np.random.Generator, gt: np.ndarray, kind: str | None = None) -> FirstPrompt:
    """Round 1's prompt for the non-empty ground truth ``gt`` (``HxW``): a uniform foreground point
    or a noisy box, with equal chance unless ``kind`` (``point``/``box``) is given."""
    gt = _check_mask("gt", gt)
    if kind is None:
        kind = "point" if rng.random() < 0.5 else "box"
    if kind == "point":
        xy = sample_point(rng, gt)
        if xy is None:
            raise ValueError("the ground-truth mask is empty: drop empty instances before sampling prompts")
        return FirstPrompt("point", point=Click(float(xy[0]), float(xy[1]), FOREGROUND))
    if kind == "box":
        return FirstPrompt("box", box=noisy_box(rng, mask_box(gt), (gt.shape[0], gt.shape[1])))
    raise ValueError(f"kind must be 'point', 'box' or None, got {kind!r}")


def sample_correction_click(rng: np.random.Generator, pred: np.ndarray, gt: np.ndarray) -> Click | None:
    """A point drawn uniformly from the error region ``pred XOR gt`` (both ``HxW``): foreground
    where the prediction missed the object, background where it spilled over. None if no error."""
    pred, gt = _check_mask("pred", pred), _check_mask("gt", gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
    xy = sample_point(rng, pred ^ gt)
    if xy is None:
        return None
    x, y = xy
    return Click(float(x), float(y), FOREGROUND if gt[y, x] else BACKGROUND)


def farthest_from_boundary(region: np.ndarray) -> tuple[int, int, float] | None:
    """The pixel of ``region`` farthest from its boundary (the image border counts as boundary):
    ``(x, y, distance_px)``, the first in raster order on ties; None if the region is empty."""
    region = _check_mask("region", region)
    if not region.any():
        return None
    padded = np.pad(region, 1).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    idx = int(np.argmax(dist))
    y, x = divmod(idx, region.shape[1])
    return x, y, float(dist[y, x])


def first_eval_click(gt: np.ndarray) -> Click:
    """The evaluation protocol's first click: the object's point farthest from its boundary."""
    found = farthest_from_boundary(gt)
    if found is None:
        raise ValueError("the ground-truth mask is empty: evaluation needs a non-empty object")
    return Click(float(found[0]), float(found[1]), FOREGROUND)


def _largest_component(region: np.ndarray) -> tuple[np.ndarray, int]:
    if not region.any():
        return region, 0
    n, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = int(np.argmax(areas)) + 1
    return labels == best, int(areas[best - 1])


def next_eval_click(pred: np.ndarray, gt: np.ndarray) -> Click | None:
    """The evaluation protocol's next click: the centre (farthest-from-boundary point) of the
    largest connected error region; foreground if it is a false negative, background if a false
    positive (a tie in area goes to the false negative). None if the prediction is exact."""
    pred, gt = _check_mask("pred", pred), _check_mask("gt", gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same shape")
    fn, fn_area = _largest_component(gt & ~pred)
    fp, fp_area = _largest_component(pred & ~gt)
    if fn_area == 0 and fp_area == 0:
        return None
    region, label = (fn, FOREGROUND) if fn_area >= fp_area else (fp, BACKGROUND)
    found = farthest_from_boundary(region)
    if found is None:  # unreachable: the region is non-empty
        raise RuntimeError("empty error region")
    return Click(float(found[0]), float(found[1]), label)
