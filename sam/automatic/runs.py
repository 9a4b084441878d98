"""Vertical runs of binary masks: one scan that yields both their boxes and their RLEs.

A crop's masks are scanned column by column with a zero row above and below every column; each
value change is recorded as ``(mask, column, row)`` with ``row`` in ``0..h`` (the change happens
between crop rows ``row - 1`` and ``row``). Changes alternate start/end within a column, so a mask's
box is ``[min column, min row, max column, max row - 1]``. Shifted into the image, the changes of
all columns are the run boundaries of the mask's column-major (RLE) order: the zero rows stand for
the image pixels above and below the crop, and where the crop spans the image's full height a
boundary between two columns is recorded twice (end of one column, start of the next) and cancels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ColumnRuns:
    """Value changes of ``N`` masks of ``h x w`` crop pixels (sorted by mask, column, row).

    Attributes:
        shape: ``(N, h, w)``.
        column, row: int64 arrays, one entry per change.
        offsets: ``N + 1`` int64; the changes of mask ``i`` are ``offsets[i]:offsets[i + 1]``.
    """

    shape: tuple[int, int, int]
    column: np.ndarray
    row: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_masks(cls, masks: np.ndarray) -> ColumnRuns:
        """Scans ``NxHxW`` bool masks (crop pixels; anything ``np.asarray`` takes)."""
        masks = np.asarray(masks, dtype=bool)
        n, h, w = masks.shape
        columns = np.ascontiguousarray(masks.transpose(0, 2, 1))  # N x w x h: column-major order
        change = np.empty((n, w, h + 1), dtype=bool)
        change[:, :, 0] = columns[:, :, 0]  # zero row above
        change[:, :, h] = columns[:, :, h - 1]  # zero row below
        np.not_equal(columns[:, :, 1:], columns[:, :, :-1], out=change[:, :, 1:h])
        flat = _flat_nonzero(change.reshape(-1))
        offsets = np.searchsorted(flat, np.arange(n + 1, dtype=np.int64) * (w * (h + 1)))
        # Integer division by a scalar is several times faster in int32 (numpy uses libdivide).
        small = np.int32 if n * w * (h + 1) < 2**31 else np.int64
        flat = flat.astype(small, copy=False)
        mask_column = flat // small(h + 1)  # mask * w + column
        row = flat - mask_column * small(h + 1)
        column = mask_column - (mask_column // small(w)) * small(w)
        return cls(shape=(n, h, w), column=column.astype(np.int64), row=row.astype(np.int64), offsets=offsets)

    def boxes(self) -> np.ndarray:
        """``Nx4`` int64 XYXY boxes in crop pixels, inclusive ends; ``[0, 0, 0, 0]`` for empty masks."""
        n = self.shape[0]
        out = np.zeros((n, 4), dtype=np.int64)
        nonempty = self.offsets[1:] > self.offsets[:-1]
        starts = self.offsets[:-1][nonempty]
        if starts.size:
            out[nonempty, 0] = np.minimum.reduceat(self.column, starts)
            out[nonempty, 1] = np.minimum.reduceat(self.row, starts)
            out[nonempty, 2] = np.maximum.reduceat(self.column, starts)
            out[nonempty, 3] = np.maximum.reduceat(self.row, starts) - 1
        return out

    def rles(self, crop_box: Sequence[int] | None = None, image_size: tuple[int, int] | None = None,
             which: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Uncompressed RLEs of the masks (all, or those listed in ``which``) placed at ``crop_box``
        (XYXY, exclusive end) in an image of ``image_size`` ``(H, W)``; by default the crop is the
        whole image."""
        _, h, w = self.shape
        height, width = (h, w) if image_size is None else image_size
        x0, y0 = (0, 0) if crop_box is None else (int(crop_box[0]), int(crop_box[1]))
        total = height * width
        out = []
        for i in range(self.shape[0]) if which is None else which:
            lo, hi = self.offsets[i], self.offsets[i + 1]
            pos = (self.column[lo:hi] + x0) * height + y0 + self.row[lo:hi]
            if pos.size > 1:
                twice = np.flatnonzero(pos[1:] == pos[:-1])
                if twice.size:
                    pos = np.delete(pos, np.concatenate([twice, twice + 1]))
            if pos.size and pos[-1] == total:  # the last pixel is set: no run starts after it
                pos = pos[:-1]
            counts = np.diff(pos, prepend=0, append=total)
            out.append({"size": [height, width], "counts": counts.tolist()})
        return out


def _flat_nonzero(values: np.ndarray) -> np.ndarray:
    """Indices of the True entries of a 1-D bool array. Changes are sparse: scan 8 bytes at a time."""
    n = values.size
    whole = n - n % 8
    words = values[:whole].view(np.uint64)
    hit_words = np.flatnonzero(words)
    if hit_words.size * 16 > words.size:  # not sparse after all
        return np.flatnonzero(values)
    if hit_words.size:
        byte_rows = values[:whole].view(np.uint8).reshape(-1, 8)[hit_words]
        r, c = np.nonzero(byte_rows)
        head = hit_words[r] * 8 + c
    else:
        head = np.zeros(0, dtype=np.int64)
    tail = np.flatnonzero(values[whole:]) + whole
    return np.concatenate([head, tail]).astype(np.int64, copy=False)
