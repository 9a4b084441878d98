import numpy as np
import pytest

from sam.automatic.grid import build_layer_point_grids, build_point_grid


def test_one_point_is_the_centre() -> None:
    np.testing.assert_array_equal(build_point_grid(1), [[0.5, 0.5]])


def test_two_per_side_cell_centres_x_fastest() -> None:
    np.testing.assert_array_equal(build_point_grid(2), [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])


def test_four_per_side_hand_values() -> None:
    grid = build_point_grid(4)
    assert grid.shape == (16, 2) and grid.dtype == np.float64
    side = [0.125, 0.375, 0.625, 0.875]
    np.testing.assert_allclose(grid[:4], [[x, 0.125] for x in side], rtol=0, atol=1e-15)
    np.testing.assert_allclose(grid[::4, 1], side, rtol=0, atol=1e-15)
    np.testing.assert_allclose(grid[5], [0.375, 0.375], rtol=0, atol=1e-15)


@pytest.mark.parametrize("n", [3, 7, 32])
def test_cell_centres_formula(n: int) -> None:
    grid = build_point_grid(n)
    i = np.arange(n * n)
    np.testing.assert_allclose(grid[:, 0], (i % n + 0.5) / n, rtol=0, atol=1e-15)
    np.testing.assert_allclose(grid[:, 1], (i // n + 0.5) / n, rtol=0, atol=1e-15)


def test_layer_grids_are_downscaled() -> None:
    grids = build_layer_point_grids(32, 2, 2)
    assert [len(g) for g in grids] == [32 * 32, 16 * 16, 8 * 8]
    grids = build_layer_point_grids(10, 2, 3)  # int(10 / 3) = 3, int(10 / 9) = 1
    assert [len(g) for g in grids] == [100, 9, 1]


def test_layer_without_points_is_an_error() -> None:
    with pytest.raises(ValueError, match="crop layer 2"):
        build_layer_point_grids(4, 2, 4)
