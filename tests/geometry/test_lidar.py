import numpy as np
import pytest
from PIL import Image

from depthlab.geometry import (
    parse_velodyne,
    read_kitti_calib,
    read_kitti_raw_calib,
    read_velodyne,
    scan_to_depth,
)

CALIB = (
    "P2: 100 0 50 4.5 0 100 40 -0.3 0 0 1 0.005\n"
    "R0_rect: 1 0 0 0 1 0 0 0 1\n"
    "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n"
)


def reference_projection(scan, text, width, height, min_depth=1e-3):
    """An independent projection: full 3x4 matrix P2 @ R0 @ Tr, per-pixel minimum via np.minimum.at."""
    rows = {}
    for line in text.splitlines():
        if ":" in line:
            key, values = line.split(":", 1)
            try:
                rows[key.strip()] = [float(v) for v in values.split()]
            except ValueError:
                pass
    p2 = np.array(rows["P2"]).reshape(3, 4)
    r0 = np.eye(4)
    r0[:3, :3] = np.array(rows["R0_rect"]).reshape(3, 3)
    tr = np.eye(4)
    tr[:3] = np.array(rows["Tr_velo_to_cam"]).reshape(3, 4)
    full = p2 @ r0 @ tr  # [3, 4]
    homogeneous = np.c_[scan[:, :3].astype(np.float64), np.ones(len(scan))]
    projected = homogeneous @ full.T  # [N, 3]
    depth = projected[:, 2]
    keep = depth > min_depth
    u = np.round(projected[keep, 0] / depth[keep]).astype(int)
    v = np.round(projected[keep, 1] / depth[keep]).astype(int)
    depth = depth[keep]
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    image = np.full((height, width), np.inf)
    np.minimum.at(image, (v[inside], u[inside]), depth[inside])
    image[np.isinf(image)] = 0
    return image.astype(np.float32)


def test_matches_an_independent_projection_on_synthetic_points(tmp_path, rng):
    (tmp_path / "calib.txt").write_text(CALIB)
    scan = np.c_[
        rng.uniform(-5, 40, (3000, 1)),
        rng.uniform(-10, 10, (3000, 1)),
        rng.uniform(-2, 2, (3000, 1)),
        rng.uniform(0, 1, (3000, 1)),
    ].astype(np.float32)
    scan = np.r_[scan, scan[:500]]  # exact duplicates: ties
    calib = read_kitti_calib(tmp_path / "calib.txt")
    depth, index = scan_to_depth(scan, calib, 100, 80, return_index=True)
    expected = reference_projection(scan, CALIB, 100, 80)
    assert np.array_equal(depth > 0, expected > 0)
    np.testing.assert_allclose(depth, expected, rtol=1e-6)
    assert (index[depth > 0] < 3000).all()  # a tie goes to the lower scan index


def test_real_kitti_frame_pixel_for_pixel(kitti_object_root):
    image = Image.open(kitti_object_root / "image_2" / "000000.png")
    width, height = image.size
    scan = read_velodyne(kitti_object_root / "velodyne" / "000000.bin")
    assert scan.shape[1] == 4 and len(scan) > 100_000
    calib = read_kitti_calib(kitti_object_root / "calib" / "000000.txt")
    depth = scan_to_depth(scan, calib, width, height)
    expected = reference_projection(
        scan, (kitti_object_root / "calib" / "000000.txt").read_text(), width, height
    )
    assert np.array_equal(depth > 0, expected > 0)
    np.testing.assert_allclose(depth, expected, rtol=1e-6)
    assert 19_000 < (depth > 0).sum() < 22_000  # INVENTORY: about 20,300 points in view
    assert calib.camera(width, height).fx == pytest.approx(707.0493)


def test_raw_layout_equals_object_layout(tmp_path, rng):
    (tmp_path / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\ncorner_dist: 9.950000e-02\n"
        "R_rect_00: 1 0 0 0 1 0 0 0 1\nP_rect_02: 100 0 50 4.5 0 100 40 -0.3 0 0 1 0.005\nS_rect_02: 100 80\n"
    )
    (tmp_path / "calib_velo_to_cam.txt").write_text(
        "calib_time: 15-Mar-2012 11:37:16\nR: 0 -1 0 0 0 -1 1 0 0\nT: 0 0 0\ndelta_f: 0 0\n"
    )
    raw = read_kitti_raw_calib(tmp_path / "calib_cam_to_cam.txt", tmp_path / "calib_velo_to_cam.txt")
    assert raw.image_size == (100, 80)
    assert read_kitti_calib(tmp_path).source == raw.source  # a date folder works too
    (tmp_path / "object.txt").write_text(CALIB)
    obj = read_kitti_calib(tmp_path / "object.txt")
    np.testing.assert_allclose(raw.velo_to_cam, obj.velo_to_cam)
    scan = rng.uniform(0, 30, (500, 4)).astype(np.float32)
    assert np.array_equal(scan_to_depth(scan, raw, 100, 80), scan_to_depth(scan, obj, 100, 80))
    with pytest.raises(ValueError, match="calib_cam_to_cam.txt.*for a 100x80 image but the image is 200x80"):
        raw.camera(200, 80)


def test_bad_calibration_and_scan_files(tmp_path):
    (tmp_path / "calib.txt").write_text("P2: 100 0 50 0 0 100 40 0 0 0 1 0\nR0_rect: 1 0 0 0 1 0 0 0 1\n")
    with pytest.raises(ValueError, match=r"calib.txt: KITTI calibration is missing 'Tr_velo_to_cam'") as info:
        read_kitti_calib(tmp_path / "calib.txt")
    assert "\n" not in str(info.value)
    (tmp_path / "short.txt").write_text(CALIB.replace("0 0 1 0.005", "0 0 1"))
    with pytest.raises(ValueError, match="short.txt: 'P2' has 11 numbers; expected 12"):
        read_kitti_calib(tmp_path / "short.txt")
    (tmp_path / "scan.bin").write_bytes(np.zeros(10, np.float32).tobytes())
    with pytest.raises(ValueError, match=r"scan.bin: 40 bytes is not a whole number of points") as info:
        read_velodyne(tmp_path / "scan.bin")
    assert "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        read_velodyne(tmp_path / "missing.bin")
    assert parse_velodyne(np.ones((2, 4), "<f4").tobytes()).shape == (2, 4)
