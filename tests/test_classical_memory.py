"""The matrix-free guided solver (same energy as the sparse one), its memory bound and the memory guard."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

import depthlab
from depthlab import classical

SRC = Path(__file__).resolve().parents[1] / "src"


def _scene(h, w, seed=0, known_fraction=0.02):
    """Three colour regions at different depths, a slanted plane, and random known pixels."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:h, 0:w]
    region = (cols > w // 3).astype(int) + (rows > (2 * h) // 3).astype(int)
    palette = np.array([[200, 40, 40], [40, 180, 60], [40, 40, 200]], np.uint8)
    rgb = palette[region]
    rgb = np.clip(rgb.astype(int) + rng.integers(-8, 9, rgb.shape), 0, 255).astype(np.uint8)
    gt = (np.array([1.5, 4.0, 2.5])[region] + 0.002 * rows).astype(np.float32)
    known = rng.random((h, w)) < known_fraction
    return rgb, gt, known


def test_matrix_free_operator_equals_the_sparse_energy():
    rgb, _, known = _scene(23, 31, known_fraction=0.2)
    image = rgb.astype(np.float32) / 255.0
    fow, pw = 0.05, 0.01
    operator = classical._GridOperator(
        image, known, sigma_color=0.15, first_order_weight=fow, prior_weight=pw
    )
    sparse = (classical._laplacian(image, 0.15) * fow + classical._curvature_operator(image, 0.15)).tocsr()
    sparse = sparse + sp.identity(known.size) * pw
    unknown = (~known).ravel()
    x = np.random.default_rng(1).normal(size=known.shape).astype(np.float32)
    x[known] = 0.0  # search directions are 0 at known pixels
    got = operator.apply(x, np.empty_like(x)).ravel()
    expected = sparse @ x.ravel().astype(np.float64)
    assert np.allclose(got[unknown], expected[unknown], rtol=1e-4, atol=1e-5)
    assert np.all(got[~unknown] == 0)
    diagonal = operator.diagonal().ravel()
    assert np.allclose(diagonal, sparse.diagonal(), rtol=1e-5)


def test_matrix_free_level_solve_matches_a_sparse_direct_solve():
    rgb, gt, known = _scene(40, 56, known_fraction=0.05)
    image = rgb.astype(np.float32) / 255.0
    values = np.where(known, 1.0 / gt, 0.0).astype(np.float32)
    prior = np.full(known.shape, float(values[known].mean()), np.float32)
    got = classical._solve_level(
        image,
        values,
        known,
        prior,
        prior_weight=0.01,
        first_order_weight=0.05,
        sigma_color=0.15,
        tol=1e-7,
        maxiter=5000,
    )
    system = (classical._laplacian(image, 0.15) * 0.05 + classical._curvature_operator(image, 0.15)).tocsr()
    u, k = np.flatnonzero(~known.ravel()), np.flatnonzero(known.ravel())
    rows = system[u]
    a_uu = rows[:, u] + sp.identity(u.size) * 0.01
    rhs = -(rows[:, k] @ values.ravel()[k]) + 0.01 * prior.ravel()[u]
    expected = values.ravel().astype(np.float64)
    expected[u] = spsolve(a_uu.tocsc(), rhs)
    assert got.dtype == np.float32
    assert np.allclose(got.ravel(), expected, rtol=2e-3)
    assert np.array_equal(got[known], values[known])


def test_guided_is_deterministic_and_keeps_known_pixels_exact():
    rgb, gt, known = _scene(180, 240)
    depth = np.where(known, gt, 0.0).astype(np.float32)
    first = classical.guided(rgb, depth, known)
    second = classical.guided(rgb, depth, known)
    assert np.array_equal(first, second)
    assert np.array_equal(first[known], depth[known])
    relative = np.abs(first - gt) / gt
    assert np.median(relative[~known]) < 0.02  # the regions and the plane are recovered


_MEMORY_WORKER = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_classical_memory import _scene
from depthlab import classical
rgb, gt, known = _scene(800, 1250, known_fraction=0.0005)
depth = np.where(known, gt, 0.0).astype(np.float32)
del gt

def status(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith(key + ":"))

with open("/proc/self/clear_refs", "w") as handle:  # reset the high-water mark
    handle.write("5")
before = status("VmRSS")
out = classical.guided(rgb, depth, known)
peak = status("VmHWM")
print(json.dumps({"bytes_per_pixel": (peak - before) / known.size,
                  "exact": bool(np.array_equal(out[known], depth[known]))}))
"""


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.access("/proc/self/clear_refs", os.W_OK)),
    reason="needs Linux /proc/self/clear_refs to reset the peak RSS",
)
def test_guided_peak_memory_per_pixel_is_bounded():
    """1 MP in a fresh process: the peak RSS increase stays under the guard's estimate (<< 250 B/px)."""
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_WORKER, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["exact"]
    assert 20 < record["bytes_per_pixel"] < classical.BYTES_PER_PIXEL["guided"] <= 250


def test_memory_guard_refuses_before_any_work_and_names_the_estimate():
    rgb, gt, known = _scene(300, 400)
    depth = np.where(known, gt, 0.0).astype(np.float32)
    need = classical.memory_estimate("guided", (300, 400))
    assert need == classical.BYTES_PER_PIXEL["guided"] * 300 * 400 + classical._FIXED_BYTES
    with pytest.raises(classical.InsufficientMemoryError) as caught:
        depthlab.complete(rgb, depth, known, method="guided", memory_limit=10_000_000)
    message = str(caught.value)
    assert "guided needs about" in message and "400x300" in message
    assert f"({need / (300 * 400):.0f} B/pixel)" in message and "10.0 MB available" in message
    assert isinstance(caught.value, MemoryError) and isinstance(caught.value, ValueError)
    with pytest.raises(classical.InsufficientMemoryError, match="nearest needs about"):
        depthlab.complete(None, depth, known, method="nearest", memory_limit=1000)
    # enough memory: runs and records the estimate
    output = depthlab.complete(rgb, depth, known, method="guided", memory_limit=need)
    assert output.info["memory_estimate_bytes"] == need
    assert np.array_equal(output.depth[known], depth[known])


def test_linear_estimate_counts_the_triangulated_points():
    shape = (200, 300)
    sparse = np.zeros(shape, bool)
    sparse[::20, ::20] = True
    dense = np.random.default_rng(0).random(shape) < 0.5
    holes = np.ones(shape, bool)
    holes[50:150, 100:200] = False  # dense known pixels, one hole: only its rim is triangulated
    base = classical.memory_estimate("linear", shape)
    assert classical.memory_estimate(
        "linear", shape, sparse
    ) == base + classical._LINEAR_BYTES_PER_POINT * int(sparse.sum())
    dense_points = classical.memory_estimate("linear", shape, dense) - base
    assert dense_points > 10 * (classical.memory_estimate("linear", shape, holes) - base)
    rim = 4 * 102 - 4
    assert classical.memory_estimate("linear", shape, holes) == base + classical._LINEAR_BYTES_PER_POINT * rim


def test_available_memory_is_positive_on_linux():
    available = classical.available_memory()
    if sys.platform.startswith("linux"):
        assert available is not None and available > 0
