"""Point grids that prompt the model: cell centres of an ``n x n`` grid, one grid per crop layer."""

from __future__ import annotations

import numpy as np


def build_point_grid(n_per_side: int) -> np.ndarray:
    """Cell centres of an ``n x n`` grid over the unit square -> ``(n*n)x2`` float64 ``(x, y)`` in
    ``[0, 1]`` (fractions of the crop's width and height).

    Centre ``i`` of a side is ``(i + 0.5) / n``, computed as ``linspace(1/(2n), 1 - 1/(2n), n)`` (the
    reference generator's rounding). Rows run top to bottom and ``x`` varies fastest.
    """
    if n_per_side < 1:
        raise ValueError(f"a point grid needs at least 1 point per side, got {n_per_side}")
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def build_layer_point_grids(n_per_side: int, n_layers: int, downscale_factor: int) -> list[np.ndarray]:
    """One grid per crop layer ``0..n_layers``; layer ``i`` has ``int(n_per_side / downscale_factor**i)``
    points per side (crops of deeper layers are smaller, so they get sparser grids)."""
    grids = []
    for layer in range(n_layers + 1):
        n = int(n_per_side / (downscale_factor**layer))
        if n < 1:
            raise ValueError(
                f"crop layer {layer} would get {n_per_side} / {downscale_factor}**{layer} < 1 points per side; "
                "raise points_per_side, or lower crop_n_layers or crop_n_points_downscale_factor"
            )
        grids.append(build_point_grid(n))
    return grids
