import matplotlib
import numpy as np
import pytest

from depthlab import visualize


def test_colorize_maps_range_ends_and_invalid():
    depth = np.array([[1.0, 2.0, 3.0, 0.0]])
    rgb = visualize.colorize(depth, vmin=1.0, vmax=3.0, cmap="viridis")
    cmap = matplotlib.colormaps["viridis"]
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 4, 3)
    assert np.array_equal(rgb[0, 0], np.asarray(cmap(0.0, bytes=True))[:3])
    assert np.array_equal(rgb[0, 2], np.asarray(cmap(1.0, bytes=True))[:3])
    assert np.array_equal(rgb[0, 3], [0, 0, 0])


def test_colorize_errors():
    with pytest.raises(ValueError, match="colormap"):
        visualize.colorize(np.ones((2, 2)), cmap="no-such-map")
    with pytest.raises(ValueError, match="vmax"):
        visualize.colorize(np.ones((2, 2)), vmin=2, vmax=1)
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        visualize.colorize(np.ones((2, 2, 2)))


def test_depth_range_percentiles_and_empty():
    lo, hi = visualize.depth_range(np.linspace(1, 100, 100).reshape(10, 10), percentiles=(0, 100))
    assert (lo, hi) == (1.0, 100.0)
    assert visualize.depth_range(np.zeros((3, 3))) == (0.0, 1.0)


def test_panel_marks_holes_and_has_tiles():
    h, w = 20, 30
    rgb = np.full((h, w, 3), 10, np.uint8)
    depth = np.full((h, w), 2.0)
    known = np.ones((h, w), bool)
    known[5:10, 5:10] = False
    out = visualize.panel(rgb, depth, known, depth, titles=False, gap=4)
    assert out.shape == (h, 3 * w + 2 * 4, 3)
    hole = out[7, w + 4 + 7]
    assert tuple(hole) == visualize.HOLE_COLOR
    err = visualize.error_map(depth, depth + 0.5)
    with_err = visualize.panel(rgb, depth, known, depth, error=err)
    assert with_err.shape[1] == 4 * w + 3 * 4 and with_err.shape[0] > h
    with pytest.raises(ValueError, match="share one size"):
        visualize.panel(rgb, depth[:5], known, depth)


def test_add_colorbar_and_error_map():
    rgb = np.zeros((50, 40, 3), np.uint8)
    out = visualize.add_colorbar(rgb, 0.0, 5.0, label="m")
    assert out.shape[0] == 50 and out.shape[1] > 40 and np.array_equal(out[:, :40], rgb)
    err = visualize.error_map(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0]]))
    assert np.array_equal(err[0, 1], [0, 0, 0])


def test_panel_draws_sparse_points_as_discs_with_colorbar_and_caption():
    h, w = 60, 80
    rgb = np.zeros((h, w, 3), np.uint8)
    depth = np.zeros((h, w))
    depth[30, 40] = 2.0
    depth[10, 10] = 4.0
    known = depth > 0
    plain = visualize.panel(rgb, depth, known, np.full((h, w), 3.0), titles=False, gap=0, point_radius=0)
    discs = visualize.panel(rgb, depth, known, np.full((h, w), 3.0), titles=False, gap=0)
    tile = slice(w, 2 * w)
    hole = np.asarray(visualize.HOLE_COLOR)
    n_plain = int((np.any(plain[:, tile] != hole, axis=2)).sum())
    n_discs = int((np.any(discs[:, tile] != hole, axis=2)).sum())
    assert n_plain == 2 and n_discs >= 2 * 5  # each point is a disc of radius >= 1 (5 px)
    assert np.array_equal(discs[31, w + 40], plain[30, w + 40])  # the disc has the point's colour
    full = visualize.panel(rgb, depth, known, np.full((h, w), 3.0), colorbar=True, unit="m", caption="x")
    assert full.shape[1] > 3 * w + 8 and full.shape[0] > discs.shape[0]
