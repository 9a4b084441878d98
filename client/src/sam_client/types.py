"""Typed prompts and results. Coordinates are original-image pixels (x right, y down), as in the API."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Mode = Literal["auto", "multi", "single"]
Encoding = Literal["rle", "png", "logits"]


@dataclass(frozen=True)
class Point:
    """A point prompt at (``x``, ``y``) original-image pixels; ``foreground=False`` marks background."""

    x: float
    y: float
    foreground: bool = True


@dataclass(frozen=True)
class Box:
    """An axis-aligned box, XYXY, original-image pixels."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x_min, self.y_min, self.x_max, self.y_max)


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one prediction: points and/or a box, optionally refined by an earlier mask
    (its low-resolution ``mask_logits`` ``float32 [L, L]``, or its ``mask_id``, not both)."""

    points: tuple[Point, ...] = ()
    box: Box | None = None
    mask_logits: np.ndarray | None = field(default=None, compare=False)
    mask_id: str | None = None


@dataclass(frozen=True)
class Mask:
    """One predicted mask.

    Attributes:
        score: predicted IoU; masks of a prompt set come highest first.
        area_px: number of object pixels at the original size.
        bbox: tightest box around the object, inclusive pixel indices (all zero when empty).
        mask_id: id for a later ``mask_id`` prompt on the same image ("" if the server keeps none).
        mask: ``bool [H, W]`` at the original image size (None for the "logits" encoding).
        low_res_logits: ``float32 [L, L]`` logits in the padded resized frame ("logits" encoding only).
        rle_counts: the COCO compressed RLE counts string ("rle" encoding only).
        png: the PNG bytes as the server sent them ("png" encoding only).
    """

    score: float
    area_px: int
    bbox: Box
    mask_id: str
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    low_res_logits: np.ndarray | None = field(default=None, repr=False, compare=False)
    rle_counts: str | None = field(default=None, repr=False)
    png: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SegmentResult:
    """The masks of each prompt set, in request order; within a set ranked by score, best first."""

    image_id: str
    height: int
    width: int
    cached: bool
    results: tuple[tuple[Mask, ...], ...]

    @property
    def masks(self) -> tuple[Mask, ...]:
        """The ranked masks of the first (often the only) prompt set."""
        return self.results[0] if self.results else ()

    @property
    def best(self) -> Mask:
        """The highest-scoring mask of the first prompt set."""
        return self.masks[0]

    def __iter__(self) -> Iterator[tuple[Mask, ...]]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)


@dataclass(frozen=True)
class EmbedResult:
    """An embedded image: its id, sizes ((height, width) pixels), whether it was cached already, and
    the embedding ``[C, g, g]`` if asked for."""

    image_id: str
    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    cached: bool
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ModelInfo:
    """The served model (see GetModelInfoResponse)."""

    name: str
    version: str
    image_size_px: int
    embedding_shape: tuple[int, ...]
    low_res_mask_size_px: int
    mask_threshold: float
    cache_float16: bool


@dataclass(frozen=True)
class GeneratedMask:
    """One mask of automatic generation: the mask plus its stability score, prompting point and crop."""

    mask: Mask
    stability_score: float
    input_point: Point
    crop_box: Box
