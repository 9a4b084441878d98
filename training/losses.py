"""SAM's training losses on mask logits and IoU predictions.

Shapes: ``logits`` ``BxCxhxw`` float (C candidate masks per prompt set: 1, or 3 multimask outputs),
``target`` ``Bx1xhxw`` float in {0, 1} (one ground-truth mask per prompt set, broadcast over C),
``iou_pred`` ``BxC`` float. Logits and target share one pixel frame (the caller resizes one to
the other); every pixel counts equally.

- Focal loss (alpha 0.25, gamma 2), the mean over pixels of each mask.
- Dice loss ``1 - (2*sum(p*t) + 1) / (sum(p) + sum(t) + 1)`` with ``p = sigmoid(logits)``; the +1
  keeps it defined for empty masks.
- Mask loss = 20 * focal + 1 * dice (SAM's 20:1 ratio).
- IoU loss: mean squared error between ``iou_pred`` and the true IoU of each candidate mask
  (``logits > 0`` against the target), computed without gradient through the true IoU.
- With several candidates, only the one with the lowest mask loss is backpropagated for the mask
  loss (per prompt set); the IoU head is trained on all candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.ndim != 4:
        raise ValueError(f"logits must be BxCxhxw, got shape {tuple(logits.shape)}")
    b, _, h, w = logits.shape
    if target.shape != (b, 1, h, w):
        raise ValueError(
            f"target must be Bx1xhxw = {(b, 1, h, w)} to match logits {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}; resize the target to the logits' frame"
        )


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = FOCAL_ALPHA,
                       gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Focal loss per mask: ``BxCxhxw`` logits, ``Bx1xhxw`` target -> ``BxC`` (mean over pixels).

    ``loss = a_t * (1 - p_t)^gamma * BCE``, ``p_t = p`` where the target is 1 else ``1 - p``,
    ``a_t = alpha`` where the target is 1 else ``1 - alpha``.
    """
    _check(logits, target)
    target = target.to(logits.dtype).expand_as(logits)
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(2).mean(dim=2)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss per mask: ``BxCxhxw`` logits, ``Bx1xhxw`` target -> ``BxC``."""
    _check(logits, target)
    p = torch.sigmoid(logits).flatten(2)
    t = target.to(logits.dtype).flatten(2)
    numerator = 2 * (p * t).sum(dim=2) + smooth
    denominator = p.sum(dim=2) + t.sum(dim=2) + smooth
    return 1 - numerator / denominator


def mask_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``20 * focal + 1 * dice`` per mask -> ``BxC``."""
    return FOCAL_WEIGHT * sigmoid_focal_loss(logits, target) + DICE_WEIGHT * dice_loss(logits, target)


@torch.no_grad()
def mask_iou(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """IoU of ``logits > threshold`` with ``target > 0.5`` per mask -> ``BxC`` float (1.0 when both
    are empty)."""
    _check(logits, target)
    pred = (logits > threshold).flatten(2)
    gt = (target > 0.5).flatten(2)
    inter = (pred & gt).sum(dim=2).to(logits.dtype)
    union = (pred | gt).sum(dim=2).to(logits.dtype)
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass(frozen=True)
class SamLoss:
    """``total = mask + iou_weight * iou``. ``mask``, ``focal``, ``dice``: of the selected candidate,
    mean over B. ``iou``: MSE over all B*C. ``selected``: ``B`` long, the candidate used per prompt
    set. ``true_iou``: ``BxC`` (no grad)."""

    total: torch.Tensor
    mask: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    selected: torch.Tensor
    true_iou: torch.Tensor


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor,
             iou_weight: float = 1.0) -> SamLoss:
    """SAM's loss for one round of predictions.

    Args:
        logits: ``BxCxhxw`` mask logits (C = 1 single output, or the 3 multimask outputs).
        iou_pred: ``BxC`` predicted IoU of each candidate.
        target: ``Bx1xhxw`` ground truth in {0, 1}.
        iou_weight: weight of the IoU MSE in ``total`` (SAM uses 1).
    """
    _check(logits, target)
    if iou_pred.shape != logits.shape[:2]:
        raise ValueError(f"iou_pred must be BxC = {tuple(logits.shape[:2])}, got {tuple(iou_pred.shape)}")
    focal = sigmoid_focal_loss(logits, target)
    dice = dice_loss(logits, target)
    combined = FOCAL_WEIGHT * focal + DICE_WEIGHT * dice
    selected = combined.detach().argmin(dim=1)
    rows = torch.arange(logits.shape[0], device=logits.device)
    true_iou = mask_iou(logits, target)
    iou = F.mse_loss(iou_pred, true_iou.to(iou_pred.dtype))
    mask = combined[rows, selected].mean()
    return SamLoss(
        total=mask + iou_weight * iou,
        mask=mask,
        focal=focal[rows, selected].mean(),
        dice=dice[rows, selected].mean(),
        iou=iou,
        selected=selected,
        true_iou=true_iou,
    )
