"""Published protocols (docs/protocols.md): NLSPN view, KITTI-DC units and lines, pattern suite."""

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthlab import masks
from depthlab.data import DepthSample, get_dataset
from depthlab.data.nyuv2 import NLSPN_CROP, NYU_OFFICIAL_TEST_FRAMES, nlspn_crop_box
from depthlab.evaluation.item import known_mask_for
from depthlab.evaluation.metrics import compute_metrics

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"


@pytest.fixture
def nyu_folder(tmp_path):
    """Two synthetic NYUv2 frames in DenseDepth's PNG layout (640x480, uint16 mm)."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "nyu2_test"
    folder.mkdir()
    for name in ("00000", "00008"):
        rgb = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
        depth = rng.integers(700, 9000, size=(480, 640)).astype(np.uint16)
        Image.fromarray(rgb).save(folder / f"{name}_colors.png")
        Image.fromarray(depth).save(folder / f"{name}_depth.png")
    return tmp_path


def test_nlspn_constants():
    assert NLSPN_CROP == (228, 304)
    assert NYU_OFFICIAL_TEST_FRAMES == 654
    assert nlspn_crop_box() == (6, 8)  # torchvision CenterCrop of 240x320 -> 228x304


def test_nlspn_view_is_bilinear_half_then_centre_crop(nyu_folder):
    dataset = get_dataset("nyu_nlspn", nyu_folder)
    sample = dataset[0]
    assert sample.rgb.shape == (228, 304, 3) and sample.depth.shape == (228, 304)
    assert sample.valid_mask.all()
    raw = np.asarray(Image.open(nyu_folder / "nyu2_test" / "00000_depth.png")).astype(np.float64) / 1000
    # PIL bilinear 2x reduction = separable triangle filter with weights (1, 3, 3, 1) / 8 on
    # source rows/cols 2i-1 .. 2i+2 (away from the border); then crop rows 6:, cols 8:.
    w = np.array([1, 3, 3, 1]) / 8
    for r, c in [(0, 0), (100, 150), (227, 303), (57, 11)]:
        i, j = r + 6, c + 8
        patch = raw[2 * i - 1 : 2 * i + 3, 2 * j - 1 : 2 * j + 3]
        assert sample.depth[r, c] == pytest.approx(w @ patch @ w, abs=1e-5)
    described = dataset.describe()
    assert described["official_test_frames"] == 654 and described["frames_present"] == 2


def test_points_500_same_seed_same_pixels(nyu_folder):
    sample = get_dataset("nyu_nlspn", nyu_folder)[0]
    depth_a, known_a = known_mask_for(sample, "points:500", seed=0)
    depth_b, known_b = known_mask_for(sample, "points:500", seed=0)
    _, known_c = known_mask_for(sample, "points:500", seed=1)
    assert known_a.sum() == 500
    assert np.array_equal(known_a, known_b) and np.array_equal(depth_a, depth_b)
    assert not np.array_equal(known_a, known_c)
    # the documented derivation: default_rng([seed, crc32(sample_id), crc32(protocol)]), choice
    import zlib

    rng = np.random.default_rng([0, zlib.crc32(b"00000"), zlib.crc32(b"points:500")])
    chosen = rng.choice(sample.valid_mask.size, size=500, replace=False)  # all valid: idx = flat
    expected = np.zeros(sample.valid_mask.size, bool)
    expected[chosen] = True
    assert np.array_equal(known_a.ravel(), expected)


def test_kitti_units_hand_computed():
    gt = np.array([[10.0, 20.0]])
    pred = np.array([[11.0, 18.0]])
    got = compute_metrics(pred, gt, None)
    assert got["rmse_mm"] == pytest.approx(1000 * math.sqrt((1 + 4) / 2))  # 1581.14 mm
    assert got["mae_mm"] == pytest.approx(1500.0)
    inv = [1000 / 11 - 1000 / 10, 1000 / 18 - 1000 / 20]  # 1/km
    assert got["i_mae_km"] == pytest.approx((abs(inv[0]) + abs(inv[1])) / 2)  # 7.3232
    assert got["i_rmse_km"] == pytest.approx(math.sqrt((inv[0] ** 2 + inv[1] ** 2) / 2))  # 7.5336


def _synthetic_scan(n_beams=64, fov=(-24.9, 2.0), size=(352, 1216)):
    """A spinning LiDAR at the camera centre seeing a sphere of radius 20 m: depth map + beam ids."""
    height, width = size
    fx = fy = 721.5
    cx, cy = 609.6, 10.0
    depth = np.zeros(size)
    beam = np.full(size, -1)
    for b, theta in enumerate(np.linspace(fov[1], fov[0], n_beams)):
        phi = np.radians(np.arange(-40, 40, 0.09))
        t = np.radians(theta)
        u = np.round(cx + fx * np.tan(phi)).astype(int)
        v = np.round(cy - fy * np.tan(t) / np.cos(phi)).astype(int)
        inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
        depth[v[inside], u[inside]] = 20.0 * np.cos(t) * np.cos(phi[inside])
        beam[v[inside], u[inside]] = b
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    return depth, beam, K


def test_scan_line_ids_recover_the_beams():
    depth, beam, K = _synthetic_scan()
    ids = masks.scan_line_ids(depth, K, lidar_offset=(0.0, 0.0, 0.0))
    assert np.array_equal(ids >= 0, beam >= 0)
    in_view = np.unique(beam[beam >= 0])
    for line in np.unique(ids[ids >= 0]):  # each derived line is one beam, in order from the top
        assert np.unique(beam[ids == line]).tolist() == [in_view[line]]
    kept = masks.scan_lines(depth, K, 16, lidar_offset=(0.0, 0.0, 0.0))
    assert set(np.unique(ids[kept]) % 4) == {0}
    with pytest.raises(ValueError, match="n_lines"):
        masks.scan_lines(depth, K, 24)


def test_lines_protocol_uses_the_sensor_depth():
    depth, _, K = _synthetic_scan()
    gt = np.where(depth > 0, depth, 15.0).astype(np.float32)
    sample = DepthSample("s", np.zeros((*depth.shape, 3), np.uint8), gt, gt > 0, depth.astype(np.float32), K)
    input_depth, known = known_mask_for(sample, "lines:16", seed=0)
    assert known.any() and not (known & (depth == 0)).any()
    assert 0.2 < known.sum() / (depth > 0).sum() < 0.3
    assert np.array_equal(input_depth[known], depth[known].astype(np.float32))


@pytest.mark.parametrize("protocol", ["orb:100", "sift:100", "range:0.3", "blob:0.1", "points:5"])
def test_pattern_suite_seeded_and_inside_valid(protocol):
    rng = np.random.default_rng(0)
    image = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    image[20:60, 30:90] = 255  # a bright box: corners for the detectors
    depth = np.linspace(1.0, 5.0, 96 * 128).reshape(96, 128)
    valid = np.ones((96, 128), bool)
    valid[:, :10] = False

    def draw(seed):
        return masks.make_mask(
            protocol, valid, masks.protocol_rng(seed, "x", protocol), rgb=image, depth=depth
        )

    known = draw(0)
    assert np.array_equal(known, draw(0)) and not (known & ~valid).any()
    kind = protocol.split(":")[0]
    if kind in ("orb", "sift"):
        assert 10 <= known.sum() <= 100
    if kind == "range":
        removed = valid & ~known
        assert removed.sum() / valid.sum() == pytest.approx(0.3, abs=0.01)
        assert np.ptp(depth[removed]) <= 0.31 * 4.0  # one contiguous depth interval
    if kind == "blob":
        whole = masks.object_blob(np.ones_like(valid), 0.1, masks.protocol_rng(0, "x", protocol))
        assert (~whole).sum() / whole.size == pytest.approx(0.1, abs=0.01)
        assert np.array_equal(known, whole & valid)
    if kind == "points":
        assert known.sum() == 5
    with pytest.raises(ValueError, match="needs"):
        masks.make_mask("orb:10", valid, 0)


def test_real_frames_nlspn_and_kitti_lines():
    if not SHARED.is_dir():
        pytest.skip(f"real data not available at {SHARED}")
    dataset = get_dataset("nyu_nlspn", SHARED / "stepi2299__eadir2/data/nyu_samples")
    assert len(dataset) == 20 and dataset[0].depth.shape == (228, 304)
    kitti = get_dataset("kitti_object", SHARED / "kuixu__kitti_object_vis/data/object")
    sample = kitti[0]
    ids = masks.scan_line_ids(sample.depth, sample.intrinsics)
    assert 40 <= ids.max() + 1 <= 64  # the lines inside the camera's field of view
    kept = masks.scan_lines(sample.depth, sample.intrinsics, 16)
    assert 0.15 < kept.sum() / (sample.depth > 0).sum() < 0.35


def test_results_record_the_method_options(tmp_path, nyu_folder):
    import csv
    import json

    from depthlab.evaluation.item import method_settings
    from depthlab.evaluation.runner import merge_config, run_evaluation

    recorded = method_settings("depthlab", {"processing_resolution": 512})
    assert recorded["processing_resolution"] == 512  # given
    assert recorded["resize_mode"] == "auto"  # the pipeline's defaults
    assert recorded["num_inference_steps"] in (50, "pipeline default")
    assert recorded["ensemble_size"] == 1
    config = merge_config(
        {"method_options": {"guided": {"space": "depth"}}},
        {
            "dataset": "nyu_nlspn",
            "root": str(nyu_folder),
            "protocols": ["points:50"],
            "methods": ["guided"],
            "out": str(tmp_path / "run"),
            "num_figures": 0,
            "limit": 1,
        },
    )
    summary = run_evaluation(config, show_progress=False)
    assert summary["method_settings"] == {"guided": {"space": "depth"}}
    assert "- `guided`: space=depth" in (tmp_path / "run" / "table.md").read_text()
    rows = list(csv.DictReader(open(tmp_path / "run" / "per_sample.csv")))
    assert rows and all(json.loads(r["options"]) == {"space": "depth"} for r in rows)
