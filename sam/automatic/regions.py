"""Removal of small disconnected regions and small holes from binary masks (numpy only).

Connected components are found on row runs: each row's runs of set pixels are the nodes, and a run
touches a run of the next row when their column ranges overlap or meet diagonally (8-connectivity).
The results equal OpenCV's ``connectedComponentsWithStats`` (8-connectivity) as the reference
generator uses it, ties included: OpenCV numbers components by their first 2x2 pixel block in a
scan of two-row strips, so "the largest island" among equals is the first in that order.
``tests/sam/automatic`` checks this against OpenCV, which the gateway's image does not have.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Runs:
    """Runs of set pixels of an ``h x w`` mask, in raster order: row, first column, end column
    (exclusive), and the component of each run (numbered by first run in raster order)."""

    shape: tuple[int, int]
    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    component: np.ndarray
    sizes: np.ndarray  # pixels per component


def _label_runs(mask: np.ndarray) -> _Runs:
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)  # h x (w + 1): +1 where a run starts, -1 after it ends
    row, start = np.nonzero(step == 1)
    _, end = np.nonzero(step == -1)
    n = row.size
    # Run a (row r) touches run b (row r + 1) iff start_b <= end_a and end_b >= start_a. Keys
    # row * stride + column are sorted in raster order for both starts and ends.
    stride = w + 2
    start_key = row * stride + start
    end_key = row * stride + end
    lo = np.searchsorted(end_key, (row + 1) * stride + start, side="left")
    hi = np.searchsorted(start_key, (row + 1) * stride + end, side="right")
    count = np.maximum(hi - lo, 0)
    a = np.repeat(np.arange(n), count)
    b = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(a.size)
    # Union-find on the edges: hook the larger root under the smaller, compress, repeat.
    parent = np.arange(n)
    while a.size:
        pa, pb = parent[a], parent[b]
        differ = pa != pb
        if not differ.any():
            break
        np.minimum.at(parent, np.maximum(pa, pb)[differ], np.minimum(pa, pb)[differ])
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    roots, component = np.unique(parent, return_inverse=True)
    sizes = np.bincount(component, weights=end - start, minlength=roots.size).astype(np.int64)
    return _Runs((h, w), row, start, end, component.reshape(-1), sizes)


def _paint(runs: _Runs, selected: np.ndarray) -> np.ndarray:
    """The ``h x w`` bool mask of the runs where ``selected`` (one bool per run) is set."""
    h, w = runs.shape
    delta = np.zeros(h * w + 1, dtype=np.int32)
    base = runs.row[selected] * w
    np.add.at(delta, base + runs.start[selected], 1)
    np.add.at(delta, base + runs.end[selected], -1)
    return (np.cumsum(delta[:-1]) > 0).reshape(h, w)


def _largest(runs: _Runs) -> int:
    """The largest component; among equals the one OpenCV numbers first (see the module docstring)."""
    largest = np.flatnonzero(runs.sizes == runs.sizes.max())
    first_block = np.full(runs.sizes.size, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_block, runs.component, (runs.row // 2) * (runs.shape[1] + 2) + runs.start // 2)
    return int(largest[np.argmin(first_block[largest])])


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> tuple[np.ndarray, bool]:
    """Removes 8-connected islands (``mode="islands"``) or fills holes (``mode="holes"``) smaller than
    ``area_thresh`` pixels.

    A hole is an 8-connected component of the background, the outer background included (so an
    image smaller than ``area_thresh`` gets filled entirely). When every island is small, the
    largest is kept.

    Args:
        mask: ``HxW`` bool.

    Returns:
        ``(mask, changed)``: the ``HxW`` bool result and whether anything was removed or filled
        (``mask`` itself when nothing changed).
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    fill_holes = mode == "holes"
    runs = _label_runs(np.asarray(mask, dtype=bool) ^ fill_holes)
    small = runs.sizes < area_thresh
    if not small.any():
        return mask, False
    if fill_holes:
        return np.asarray(mask, dtype=bool) | _paint(runs, small[runs.component]), True
    keep = ~small
    if not keep.any():
        keep[_largest(runs)] = True
    return _paint(runs, keep[runs.component]), True
