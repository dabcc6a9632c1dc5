import numpy as np
import pytest
from PIL import Image

from depthlab import classical
from depthlab.completion import complete

CLASSICAL = ("guided", "linear", "nearest", "lidar")


def _scene(h=48, w=64, seed=0):
    """Two regions (left near, right far) with distinct colours, and 8 % random known pixels."""
    rng = np.random.default_rng(seed)
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (200, 40, 40)
    rgb[:, w // 2 :] = (40, 40, 200)
    gt = np.where(np.arange(w)[None, :] < w // 2, 1.0, 4.0) * np.ones((h, 1))
    gt = gt.astype(np.float32)
    known = rng.random((h, w)) < 0.08
    return rgb, gt, known


@pytest.mark.parametrize("method", CLASSICAL)
def test_known_pixels_exact_and_all_filled(method):
    rgb, gt, known = _scene()
    noisy = gt + np.random.default_rng(1).normal(0, 0.01, gt.shape).astype(np.float32)
    depth = np.where(known, noisy, 0.0)
    result = complete(rgb, depth, known, method=method)
    out, info = result.depth, result.info
    assert out.dtype == np.float32 and out.shape == gt.shape
    assert np.array_equal(out[known], depth[known])
    assert np.all(np.isfinite(out)) and np.all(out > 0)
    assert result.method == method and info["seconds"] >= 0


def test_nearest_copies_the_closest_value():
    depth = np.zeros((1, 7), np.float32)
    depth[0, 0], depth[0, 6] = 1.0, 5.0
    out = classical.nearest(depth)
    assert out.tolist() == [[1, 1, 1, 1, 5, 5, 5]] or out.tolist() == [[1, 1, 1, 5, 5, 5, 5]]
    assert out[0, 2] == 1.0 and out[0, 4] == 5.0


def test_linear_is_exact_on_a_plane_inside_the_hull():
    rows, cols = np.mgrid[0:30, 0:40]
    plane = (2.0 + 0.05 * rows + 0.02 * cols).astype(np.float32)
    known = np.zeros_like(plane, bool)
    known[::6, ::7] = True
    out = classical.linear(np.where(known, plane, 0), known, exact=True)
    inside = (rows <= 24) & (cols <= 35)
    assert np.allclose(out[inside], plane[inside], atol=1e-4)


def test_guided_follows_colour_edges_better_than_linear_and_nearest():
    rgb, gt, known = _scene()
    depth = np.where(known, gt, 0.0)
    unknown = ~known
    errors = {}
    for method in ("nearest", "linear", "guided"):
        out = complete(rgb, depth, known, method=method).depth
        errors[method] = float(np.sqrt(np.mean((out[unknown] - gt[unknown]) ** 2)))
    assert errors["guided"] < 0.5 * errors["linear"]
    assert errors["guided"] < errors["nearest"]


def test_guided_keeps_constant_depth_and_a_masked_zero_becomes_unknown(caplog):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    known = np.zeros((20, 24), bool)
    known[::5, ::5] = True
    out = classical.guided(rgb, np.where(known, 3.0, 0.0), known)
    assert np.allclose(out, 3.0, atol=1e-3)
    depth = np.where(known, 2.0, 0.0)
    depth[0, 0] = 0.0  # marked known but 0 m: not a measurement, so it is filled (with a warning)
    out = classical.guided(rgb, depth, known)
    assert np.all(np.isfinite(out)) and abs(out[0, 0] - 2.0) < 1e-3
    assert "1 pixels known whose depth is 0" in caplog.text


def test_input_errors_name_the_argument():
    rgb, gt, known = _scene()
    with pytest.raises(ValueError, match="space"):
        classical.guided(rgb, gt, known, space="cubic")
    with pytest.raises(ValueError, match="prior_weight"):
        classical.guided(rgb, gt, known, prior_weight=0)
    with pytest.raises(ValueError, match="image"):
        classical.guided(rgb[:10], gt, known)
    with pytest.raises(ValueError, match="no known pixel"):
        classical.nearest(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="method"):
        complete(rgb, gt, known, method="cubic")
    with pytest.raises(ValueError, match="max_depth"):
        classical.lidar(np.where(known, gt, 0), known, max_depth=1.0)


def test_lidar_fills_scan_lines():
    h, w = 60, 80
    gt = np.linspace(5, 20, w)[None, :].repeat(h, 0).astype(np.float32)
    known = np.zeros((h, w), bool)
    known[20::4, ::2] = True  # sparse scan lines in the lower part
    out = classical.lidar(np.where(known, gt, 0), known)
    assert np.array_equal(out[known], gt[known])
    assert np.all(out > 0)
    assert np.median(np.abs(out - gt) / gt) < 0.1


def test_guided_beats_nearest_and_linear_on_a_nyu_frame(nyu_samples):
    from depthlab.masks import make_mask, protocol_rng

    rgb = np.asarray(Image.open(nyu_samples / "00000_colors.png").convert("RGB"))[::2, ::2]
    gt = np.asarray(Image.open(nyu_samples / "00000_depth.png")).astype(np.float32)[::2, ::2] / 1000.0
    known = make_mask("points:200", gt > 0, protocol_rng(0, "00000", "points:200"))
    depth = np.where(known, gt, 0.0)
    unknown = ~known
    scores = {}
    for method in ("nearest", "linear", "guided"):
        out = complete(rgb, depth, known, method=method).depth
        error = out[unknown] - gt[unknown]
        scores[method] = (np.mean(np.abs(error) / gt[unknown]), np.sqrt(np.mean(error**2)))
    for baseline in ("nearest", "linear"):
        assert scores["guided"][0] < scores[baseline][0]
        assert scores["guided"][1] < scores[baseline][1]
