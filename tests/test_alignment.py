import numpy as np
import pytest

from depthlab import alignment


@pytest.fixture
def scene():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1.0, 8.0, size=(40, 50))
    mask = rng.random(depth.shape) < 0.2
    return depth, mask


def test_fit_scale_shift_recovers_known_values(scene):
    depth, mask = scene
    x = (depth - 0.7) / 2.5  # depth = 2.5 x + 0.7
    s, t = alignment.fit_scale_shift(x, depth, mask)
    assert s == pytest.approx(2.5, abs=1e-9) and t == pytest.approx(0.7, abs=1e-9)


def test_fit_scale_matches_normal_equation(scene):
    depth, mask = scene
    rng = np.random.default_rng(0)
    x = depth * 0.3 + rng.normal(0, 0.05, depth.shape)
    s = alignment.fit_scale(x, depth, mask)
    # independent: numpy lstsq on one column
    expected = np.linalg.lstsq(x[mask][:, None], depth[mask], rcond=None)[0][0]
    assert s == pytest.approx(expected, rel=1e-10)


def test_fit_scale_shift_matches_lstsq_with_noise(scene):
    depth, mask = scene
    rng = np.random.default_rng(2)
    x = rng.normal(size=depth.shape)
    s, t = alignment.fit_scale_shift(x, depth, mask)
    design = np.stack([x[mask], np.ones(mask.sum())], axis=1)
    expected = np.linalg.lstsq(design, depth[mask], rcond=None)[0]
    np.testing.assert_allclose([s, t], expected, rtol=1e-9, atol=1e-12)


def test_robust_fit_ignores_outliers(scene):
    depth, mask = scene
    x = (depth - 0.4) / 1.7
    y = depth.copy()
    rng = np.random.default_rng(3)
    outliers = mask & (rng.random(depth.shape) < 0.3)
    y[outliers] = rng.uniform(20, 50, outliers.sum())
    s_ls, t_ls = alignment.fit_scale_shift(x, y, mask)
    assert abs(s_ls - 1.7) > 0.1 or abs(t_ls - 0.4) > 1.0  # plain least squares is pulled away
    s, t, inliers = alignment.fit_scale_shift_robust(x, y, mask, seed=0)
    assert s == pytest.approx(1.7, abs=1e-6) and t == pytest.approx(0.4, abs=1e-6)
    assert inliers.sum() == (mask & ~outliers).sum()
    s_only, t_only, _ = alignment.fit_scale_shift_robust(depth / 3.0, y, mask, with_shift=False)
    assert s_only == pytest.approx(3.0, abs=1e-6) and t_only == 0.0


def test_align_depth_disparity_space(scene):
    depth, mask = scene
    relative_disparity = 4.0 / depth + 0.02  # disparity up to scale+shift: 1/d = 0.25 (x - 0.02)
    result = alignment.align_depth(relative_disparity, depth, mask, prediction_kind="disparity")
    np.testing.assert_allclose(result.depth, depth, rtol=1e-5)
    assert result.space == "disparity" and result.scale == pytest.approx(0.25)
    assert result.n_fit == mask.sum()


def test_align_depth_depth_space_methods(scene):
    depth, mask = scene
    for method in ("lstsq", "robust"):
        result = alignment.align_depth(0.5 * depth - 0.2, depth, mask, method=method)
        np.testing.assert_allclose(result.depth, depth, rtol=1e-5)
    result = alignment.align_depth(0.5 * depth, depth, mask, method="scale")
    assert result.scale == pytest.approx(2.0) and result.shift == 0.0
    # depth prediction fitted in disparity space: inverted first
    result = alignment.align_depth(3.0 * depth, depth, mask, space="disparity", method="scale")
    np.testing.assert_allclose(result.depth, depth, rtol=1e-5)


def test_align_depth_errors(scene):
    depth, mask = scene
    with pytest.raises(ValueError, match="method"):
        alignment.align_depth(depth, depth, mask, method="magic")
    with pytest.raises(ValueError, match="space"):
        alignment.align_depth(depth, depth, mask, space="log")
    with pytest.raises(ValueError, match="no pixel"):
        alignment.align_depth(depth, depth, np.zeros_like(mask))
    with pytest.raises(ValueError, match="at least 2"):
        alignment.fit_scale_shift(depth, depth, np.eye(40, 50, dtype=bool) & (np.arange(50) < 1))
