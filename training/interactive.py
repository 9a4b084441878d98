"""One simulated interactive training episode for a batch of objects (SAM's 11 rounds).

The model enters only through a ``decode`` callable with :meth:`sam.Sam.decode`'s contract (the
image embeddings already bound)::

    decode(point_coords[B,N,2] float32, point_labels[B,N] int, mask_input[B,1,L,L] float32 | None,
           has_mask_input[B] float32 | None) -> (low_res_logits[B,4,L,L], iou_predictions[B,4])

Everything is in the model's padded ``S x S`` input frame (``S = image_size``): targets are
``Bx1xSxS`` {0, 1} masks (zero in the padding), points ``(x, y)`` pixels of that frame, and
``valid_sizes[b] = (h, w)`` is the resized image's extent inside it (clicks and boxes stay inside).
Low-res logits are ``L x L`` (``L = 4g``) covering the whole ``S x S`` frame.

Prompt packing per round (the decoder contract): a point-first set is ``[first point,
corrections..., padding point]``, a box-first set ``[corrections..., box top-left, box
bottom-right]``; both have ``2 + (number of correction rounds so far)`` points, so sets of both
kinds batch together. A correction round whose prediction has no error adds a padding point.
Mask prompts are detached (no gradient flows from one round into the previous one). Round 1 is
multimask for point-first sets and single-output for box-first sets (a box is unambiguous).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from training.clicks import CLICK, FIRST, Round, plan_rounds, sample_correction_click, sample_first_prompt
from training.losses import sam_loss

LABEL_PADDING, LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT = -1, 2, 3

DecodeFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None],
                    tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class EpisodeResult:
    """``loss``: mean over rounds of :func:`training.losses.sam_loss` totals (differentiable).
    ``mask_loss``/``iou_loss``: the same means of the parts (floats). ``round_iou``: per round, the
    mean true IoU of the mask passed on. ``first_kinds``: ``point``/``box`` per object."""

    loss: torch.Tensor
    mask_loss: float
    iou_loss: float
    focal: float
    dice: float
    round_iou: list[float]
    first_kinds: list[str]


def _pack(points: list[list[tuple[float, float, int]]], boxes: list[np.ndarray | None],
          device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    coords, labels = [], []
    for pts, box in zip(points, boxes, strict=True):
        c = [(x, y) for x, y, _ in pts]
        lab = [label for _, _, label in pts]
        if box is None:
            c.append((0.0, 0.0))
            lab.append(LABEL_PADDING)
        else:
            c += [(box[0], box[1]), (box[2], box[3])]
            lab += [LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]
        coords.append(c)
        labels.append(lab)
    return (torch.tensor(coords, dtype=torch.float32, device=device),
            torch.tensor(labels, dtype=torch.int64, device=device))


def _round_loss(low_res: torch.Tensor, iou_pred: torch.Tensor, multi: np.ndarray, loss_targets: torch.Tensor,
                iou_weight: float) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, float]:
    """One round's loss over ``B`` prompt sets: rows where ``multi`` use the 3 multimask outputs
    (tokens 1-3), the others the single output (token 0); each group's :func:`sam_loss` is weighted
    by its share of ``B``. Returns (total, ``[mask, iou, focal, dice]`` floats, the ``Bx1xLxL``
    detached logits passed on, mean true IoU of those), passing on each multimask row's output with
    the highest predicted IoU."""
    b = low_res.shape[0]
    loss_size = loss_targets.shape[-1]
    total = low_res.new_zeros(())
    parts = np.zeros(4)
    passed = torch.empty_like(low_res[:, :1]).detach()
    passed_iou = 0.0
    for rows_np, picked in ((np.flatnonzero(multi), slice(1, None)), (np.flatnonzero(~multi), slice(0, 1))):
        if rows_np.size == 0:
            continue
        rows = torch.as_tensor(rows_np, device=low_res.device)
        logits, scores = low_res[rows, picked], iou_pred[rows, picked]
        up = F.interpolate(logits, size=(loss_size, loss_size), mode="bilinear", align_corners=False)
        out = sam_loss(up, scores, loss_targets[rows], iou_weight=iou_weight)
        share = rows_np.size / b
        total = total + share * out.total
        parts += share * np.array([out.mask.item(), out.iou.item(), out.focal.item(), out.dice.item()])
        best = scores.detach().argmax(dim=1)
        within = torch.arange(rows_np.size, device=low_res.device)
        passed[rows] = logits.detach()[within, best].unsqueeze(1)
        passed_iou += share * float(out.true_iou[within, best].mean())
    return total, parts, passed, passed_iou


def resize_targets(targets: torch.Tensor, size: int) -> torch.Tensor:
    """``Bx1xSxS`` {0, 1} -> ``Bx1x size x size`` {0, 1} (area average, then >= 0.5)."""
    if targets.shape[-1] == size:
        return targets
    return (F.interpolate(targets.float(), size=(size, size), mode="area") >= 0.5).float()


def run_episode(decode: DecodeFn, targets: torch.Tensor, valid_sizes: Sequence[tuple[int, int]],
                rng: np.random.Generator, rounds: Sequence[Round] | None = None,
                loss_size: int | None = None, first_kinds: Sequence[str] | None = None,
                iou_weight: float = 1.0) -> EpisodeResult:
    """Runs the rounds for ``B`` objects and returns the mean loss over rounds.

    Args:
        decode: the model's decoder with the embeddings bound (see the module docstring).
        targets: ``Bx1xSxS`` float {0, 1} ground truth in the padded input frame.
        valid_sizes: ``B`` ``(h, w)`` of each resized image inside the ``S x S`` frame.
        rng: the only source of randomness (prompts, clicks and, without ``rounds``, the plan).
        rounds: a plan from :func:`training.clicks.plan_rounds` (default: a fresh 11-round plan).
        loss_size: side of the square frame the loss is computed in (logits are upsampled,
            targets area-downsampled); default ``S``.
        first_kinds: ``point``/``box`` per object for round 1 (default: equal chance each).
    """
    if targets.ndim != 4 or targets.shape[1] != 1 or targets.shape[2] != targets.shape[3]:
        raise ValueError(f"targets must be Bx1xSxS, got shape {tuple(targets.shape)}")
    b, s = targets.shape[0], targets.shape[-1]
    if len(valid_sizes) != b:
        raise ValueError(f"valid_sizes needs one (h, w) per object: {b}, got {len(valid_sizes)}")
    rounds = list(rounds) if rounds is not None else plan_rounds(rng)
    if not rounds or rounds[0].kind != FIRST:
        raise ValueError("the plan must start with the first-prompt round (use training.clicks.plan_rounds)")
    loss_size = loss_size or s
    device = targets.device
    gt_np = targets[:, 0].detach().cpu().numpy() > 0.5
    gt_valid = [gt_np[i, :h, :w] for i, (h, w) in enumerate(valid_sizes)]
    if any(not g.any() for g in gt_valid):
        raise ValueError("every target needs foreground pixels inside its valid size; drop empty objects")
    loss_targets = resize_targets(targets, loss_size)

    kinds = list(first_kinds) if first_kinds is not None else [
        "point" if rng.random() < 0.5 else "box" for _ in range(b)
    ]
    points: list[list[tuple[float, float, int]]] = [[] for _ in range(b)]
    boxes: list[np.ndarray | None] = [None] * b
    for i in range(b):
        first = sample_first_prompt(rng, gt_valid[i], kinds[i])
        if first.point is not None:
            points[i].append((first.point.x, first.point.y, first.point.label))
        else:
            boxes[i] = first.box

    mask_input: torch.Tensor | None = None
    losses: list[torch.Tensor] = []
    parts = np.zeros(4)
    round_iou: list[float] = []
    for rnd in rounds:
        if rnd.kind == CLICK:
            if mask_input is None:
                raise ValueError("a correction round needs a previous round: the plan must start with 'first'")
            prev = F.interpolate(mask_input, size=(s, s), mode="bilinear", align_corners=False)
            prev_np = prev[:, 0].cpu().numpy() > 0.0
            for i, (h, w) in enumerate(valid_sizes):
                click = sample_correction_click(rng, prev_np[i, :h, :w], gt_valid[i])
                if click is None:
                    points[i].append((0.0, 0.0, LABEL_PADDING))
                else:
                    points[i].append((click.x, click.y, click.label))
        coords, labels = _pack(points, boxes, device)
        feed = mask_input if rnd.feeds_mask else None
        has_mask = None if feed is None else torch.ones(b, device=device)
        low_res, iou_pred = decode(coords, labels, feed, has_mask)
        # multimask output only for an ambiguous prompt: a lone first point; a box is unambiguous
        multi = np.array([rnd.multimask and kind == "point" for kind in kinds])
        total, round_parts, passed, passed_iou = _round_loss(low_res, iou_pred, multi, loss_targets, iou_weight)
        losses.append(total)
        parts += round_parts
        mask_input = passed
        round_iou.append(passed_iou)
    n = len(rounds)
    return EpisodeResult(
        loss=torch.stack(losses).mean(),
        mask_loss=parts[0] / n,
        iou_loss=parts[1] / n,
        focal=parts[2] / n,
        dice=parts[3] / n,
        round_iou=round_iou,
        first_kinds=kinds,
    )
