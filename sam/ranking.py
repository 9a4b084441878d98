"""Ordering of a prediction's masks by predicted IoU (the service returns ranked masks)."""

from __future__ import annotations

import numpy as np


def rank_order(iou_predictions: np.ndarray) -> np.ndarray:
    """Indices that sort the last axis of ``iou_predictions`` from highest to lowest score.

    Stable: equal scores keep mask-token order.
    """
    scores = np.asarray(iou_predictions)
    return np.argsort(-scores, axis=-1, kind="stable")


def rank_by_iou(masks: np.ndarray, iou_predictions: np.ndarray,
                low_res_logits: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Reorders one prediction's outputs (``CxHxW`` masks, ``C`` scores, ``Cxhxw`` logits)
    by descending predicted IoU. Returns the reordered arrays in the same order as given."""
    order = rank_order(iou_predictions)
    out: tuple[np.ndarray, ...] = (np.asarray(masks)[order], np.asarray(iou_predictions)[order])
    if low_res_logits is not None:
        out = out + (np.asarray(low_res_logits)[order],)
    return out
