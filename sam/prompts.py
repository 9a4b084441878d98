"""Prompt sets and their packing into the decoder's point/label tensors (numpy only).

A prompt set is what one mask prediction is conditioned on: any number of points and at most one
box, in original-image pixels (the mask prompt travels separately). The decoder sees one
``Nx2`` coordinate array in the resized frame and ``N`` internal labels:

- points keep their labels (1 foreground, 0 background, -1 "not a point");
- a box becomes two points labelled 2 (top-left) and 3 (bottom-right), after the points;
- with points and no box, one padding point ``(0, 0)`` labelled -1 is appended.

The gateway, the predictor and the automatic mask generator all pack prompts here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sam.transforms import scale_boxes, scale_coords

LABEL_PADDING = -1
LABEL_BACKGROUND = 0
LABEL_FOREGROUND = 1
LABEL_BOX_TOP_LEFT = 2
LABEL_BOX_BOTTOM_RIGHT = 3
USER_LABELS = (LABEL_PADDING, LABEL_BACKGROUND, LABEL_FOREGROUND)


@dataclass(frozen=True)
class PromptSet:
    """Points ``Nx2`` ``(x, y)`` and labels ``N`` in original-image pixels, and an optional XYXY box."""

    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None

    def __post_init__(self) -> None:
        if (self.points is None) != (self.labels is None):
            raise ValueError("points and labels go together: give both or neither")
        if self.points is not None and self.labels is not None:
            points = np.asarray(self.points, dtype=np.float64)
            labels = np.asarray(self.labels)
            if points.ndim != 2 or points.shape[1] != 2:
                raise ValueError(f"points must be Nx2 (x, y), got shape {points.shape}")
            if labels.shape != (points.shape[0],):
                raise ValueError(f"labels must have shape ({points.shape[0]},), got {labels.shape}")
            if not np.isfinite(points).all():
                raise ValueError("point coordinates must be finite numbers (found NaN or infinity)")
            if labels.size and not (np.issubdtype(labels.dtype, np.number) and
                                    np.isin(labels, USER_LABELS).all()):
                bad = sorted(set(np.asarray(labels).ravel().tolist()) - set(USER_LABELS))
                raise ValueError(f"point labels must be 1 (foreground), 0 (background) or -1 (ignore); got {bad}")
            object.__setattr__(self, "points", points)
            object.__setattr__(self, "labels", labels.astype(np.int32))
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float64).reshape(-1)
            if box.shape != (4,):
                raise ValueError(f"box must hold 4 values (x0, y0, x1, y1), got {box.size}")
            if not np.isfinite(box).all():
                raise ValueError("box coordinates must be finite numbers (found NaN or infinity)")
            object.__setattr__(self, "box", box)

    @property
    def num_points(self) -> int:
        return 0 if self.points is None else int(self.points.shape[0])

    @property
    def packed_length(self) -> int:
        """Number of decoder points this set packs into."""
        if self.box is not None:
            return self.num_points + 2
        return self.num_points + 1 if self.num_points else 0


@dataclass(frozen=True)
class PackedPrompts:
    """Decoder inputs: ``coords`` ``BxNx2`` float32 resized-frame pixels, ``labels`` ``BxN`` int32."""

    coords: np.ndarray
    labels: np.ndarray


def pack_prompt_set(prompt: PromptSet, original_size: tuple[int, int],
                    image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One set -> (``Nx2`` float32 resized-frame coordinates, ``N`` int32 labels)."""
    coords: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    if prompt.points is not None and prompt.labels is not None and prompt.num_points:
        coords.append(scale_coords(prompt.points, original_size, image_size))
        labels.append(prompt.labels)
        if prompt.box is None:
            coords.append(np.zeros((1, 2)))
            labels.append(np.array([LABEL_PADDING], dtype=np.int32))
    if prompt.box is not None:
        coords.append(scale_boxes(prompt.box, original_size, image_size).reshape(2, 2))
        labels.append(np.array([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT], dtype=np.int32))
    if not coords:
        return np.zeros((0, 2), np.float32), np.zeros((0,), np.int32)
    return (np.concatenate(coords).astype(np.float32),
            np.concatenate(labels).astype(np.int32))


def pack_prompt_sets(prompts: Sequence[PromptSet], original_size: tuple[int, int],
                     image_size: int) -> PackedPrompts:
    """Packs B sets that pack to the same length N (e.g. same number of points, all with or all
    without a box) into ``BxNx2`` / ``BxN`` arrays."""
    if not prompts:
        raise ValueError("no prompt sets to pack")
    lengths = {p.packed_length for p in prompts}
    if len(lengths) != 1:
        raise ValueError(
            "prompt sets in one batch must have the same number of points and all or none a box; "
            f"got packed lengths {sorted(lengths)} (split them into separate batches)"
        )
    packed = [pack_prompt_set(p, original_size, image_size) for p in prompts]
    return PackedPrompts(coords=np.stack([c for c, _ in packed]), labels=np.stack([lab for _, lab in packed]))
