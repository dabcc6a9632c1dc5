import math

import numpy as np
import pytest

from depthlab.evaluation import metrics


def reference_metrics(pred, gt, mask):
    """Independent pixel-by-pixel implementation in plain Python (KITTI devkit / Marigold defs)."""
    pairs = [
        (float(p), float(g))
        for p, g, m in zip(pred.ravel().tolist(), gt.ravel().tolist(), mask.ravel().tolist(), strict=True)
        if m and g > 0 and math.isfinite(g)
    ]
    n = len(pairs)
    out = {
        "abs_rel": sum(abs(p - g) / g for p, g in pairs) / n,
        "sq_rel": sum((p - g) * (p - g) / g for p, g in pairs) / n,
        "rmse": math.sqrt(sum((p - g) ** 2 for p, g in pairs) / n),
        "rmse_log": math.sqrt(sum((math.log(p) - math.log(g)) ** 2 for p, g in pairs) / n),
        "log10": sum(abs(math.log(p, 10) - math.log(g, 10)) for p, g in pairs) / n,
        "mae": sum(abs(p - g) for p, g in pairs) / n,
        "i_rmse": math.sqrt(sum((1 / p - 1 / g) ** 2 for p, g in pairs) / n),
        "i_mae": sum(abs(1 / p - 1 / g) for p, g in pairs) / n,
    }
    for k in (1, 2, 3):
        out[f"delta{k}"] = sum(1 for p, g in pairs if max(p / g, g / p) < 1.25**k) / n
    for name in ("rmse", "mae", "i_rmse", "i_mae"):  # KITTI-DC units: m -> mm, 1/m -> 1/km
        out[f"{name}_mm" if name in ("rmse", "mae") else f"{name}_km"] = 1000.0 * out[name]
    return out


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 10.0, size=(24, 32))
    gt[0, :5] = 0.0  # invalid
    gt[1, 0] = np.nan
    pred = gt * rng.uniform(0.6, 1.5, size=gt.shape) + rng.normal(0, 0.1, size=gt.shape)
    pred = np.abs(np.nan_to_num(pred, nan=1.0)) + 0.05
    mask = rng.random(gt.shape) < 0.7
    return pred, gt, mask


def test_compute_metrics_matches_reference(arrays):
    pred, gt, mask = arrays
    got = metrics.compute_metrics(pred, gt, mask)
    expected = reference_metrics(pred, gt, mask)
    assert set(metrics.METRIC_NAMES) <= set(got)
    for name in metrics.METRIC_NAMES:
        assert got[name] == pytest.approx(expected[name], abs=1e-6, rel=1e-9), name
        assert isinstance(got[name], float)
    assert got["n_pixels"] == sum(1 for g, m in zip(gt.ravel(), mask.ravel(), strict=True) if m and g > 0)


def test_individual_functions_match_compute_metrics(arrays):
    pred, gt, mask = arrays
    allm = metrics.compute_metrics(pred, gt, mask)
    for name, fn in metrics.METRICS.items():
        assert fn(pred, gt, mask) == allm[name]  # the same kernel: bit-identical


def test_torch_inputs_and_float32(arrays):
    torch = pytest.importorskip("torch")
    pred, gt, mask = arrays
    got = metrics.compute_metrics(torch.from_numpy(pred), torch.from_numpy(gt), torch.from_numpy(mask))
    expected = metrics.compute_metrics(pred, gt, mask)
    for name in metrics.METRIC_NAMES:
        assert got[name] == pytest.approx(expected[name], abs=1e-12)


def test_perfect_prediction():
    gt = np.linspace(1, 5, 20).reshape(4, 5)
    got = metrics.compute_metrics(gt.copy(), gt, None)
    assert got["abs_rel"] == 0 and got["rmse"] == 0 and got["delta1"] == 1.0


def test_delta_is_strict_and_fraction():
    gt = np.ones((1, 4))
    pred = np.array([[1.25, 1.0, 0.5, 1.0 / 1.25 + 1e-9]])
    assert metrics.delta1(pred, gt) == pytest.approx(0.5)


def test_selected_subset_and_metrics_argument(arrays):
    pred, gt, mask = arrays
    got = metrics.compute_metrics(pred, gt, mask, metrics=["rmse", "delta1"])
    assert set(got) == {"rmse", "delta1", "n_pixels"}
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.compute_metrics(pred, gt, mask, metrics=["nope"])


def test_errors():
    gt = np.ones((3, 3))
    with pytest.raises(ValueError, match="no valid pixel"):
        metrics.compute_metrics(gt, gt, np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="no valid pixel"):
        metrics.compute_metrics(gt, np.zeros((3, 3)), None)
    with pytest.raises(ValueError, match="shape"):
        metrics.compute_metrics(np.ones((3, 4)), gt, None)
    bad = gt.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        metrics.compute_metrics(bad, gt, None)


def test_non_positive_prediction_clamped_for_log_metrics():
    gt = np.full((2, 2), 2.0)
    pred = np.array([[0.0, 2.0], [2.0, 2.0]])
    got = metrics.compute_metrics(pred, gt, None)
    assert np.isfinite(got["rmse_log"]) and got["delta1"] == 0.75
    assert got["rmse"] == pytest.approx(1.0)


def test_region_mask():
    valid = np.array([[True, True], [True, False]])
    known = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(metrics.region_mask(valid, known, "unknown"), [[0, 1], [1, 0]])
    np.testing.assert_array_equal(metrics.region_mask(valid, known, "known"), [[1, 0], [0, 0]])
    np.testing.assert_array_equal(metrics.region_mask(valid, known, "all"), valid)
    with pytest.raises(ValueError, match="region"):
        metrics.region_mask(valid, known, "inside")


def test_clip_prediction():
    pred = np.array([[0.0, 5.0], [np.nan, 100.0]])
    np.testing.assert_array_equal(metrics.clip_prediction(pred, 1e-3, 10.0), [[1e-3, 5.0], [10.0, 10.0]])
    np.testing.assert_array_equal(metrics.clip_prediction(pred[:1], None, None), pred[:1])
