import json

import numpy as np
import pytest

from depthlab.geometry import Camera, check_rigid, invert_pose, load_camera, load_pose


def test_K_roundtrip_and_fov():
    cam = Camera(500.0, 510.0, 319.5, 239.5, 640, 480)
    assert np.array_equal(cam.K, [[500, 0, 319.5], [0, 510, 239.5], [0, 0, 1]])
    assert Camera.from_K(cam.K, 640, 480) == cam
    fov = Camera.from_fov(640, 480, 90.0)
    assert fov.fx == pytest.approx(320.0) and fov.fy == fov.fx and fov.cx == 319.5 and fov.cy == 239.5
    assert Camera.from_fov(640, 480, 90.0, axis="vertical").fx == pytest.approx(240.0)
    with pytest.raises(ValueError, match="fov_deg"):
        Camera.from_fov(640, 480, 180.0)
    with pytest.raises(ValueError, match="skew"):
        Camera.from_K([[500, 1, 3], [0, 500, 2], [0, 0, 1]], 10, 10)
    with pytest.raises(ValueError, match="fx"):
        Camera(-1.0, 1.0, 0.0, 0.0, 10, 10)


def test_kitti_p2():
    p2 = np.array([[707.0, 0, 604.0, 45.7], [0, 707.0, 180.5, -0.34], [0, 0, 1, 0.005]])
    cam = Camera.from_kitti_p2(p2, 1242, 375)
    assert (cam.fx, cam.cy, cam.width) == (707.0, 180.5, 1242)


def test_scaled_and_cropped_project_the_same_point():
    cam = Camera(500.0, 510.0, 319.5, 239.5, 640, 480)
    point = np.array([0.3, -0.2, 2.0])

    def pixel(c):
        return c.fx * point[0] / point[2] + c.cx, c.fy * point[1] / point[2] + c.cy

    u, v = pixel(cam)
    half = cam.scaled(0.5)
    assert (half.width, half.height) == (320, 240)
    # the pixel grid halves: the centre of pixel u maps to (u + 0.5) / 2 - 0.5
    assert pixel(half) == pytest.approx(((u + 0.5) / 2 - 0.5, (v + 0.5) / 2 - 0.5))
    assert cam.resized(320, 240) == half
    crop = cam.cropped(100, 50, 200, 100)
    assert pixel(crop) == pytest.approx((u - 100, v - 50)) and (crop.width, crop.height) == (200, 100)
    with pytest.raises(ValueError, match="does not fit"):
        cam.cropped(500, 0, 200, 100)


def test_check_size_names_the_argument():
    cam = Camera(500.0, 500.0, 319.5, 239.5, 640, 480)
    cam.check_size(640, 480, "--intrinsics")
    with pytest.raises(
        ValueError, match=r"^--intrinsics: the intrinsics are for a 640x480 image but the image is 320x240"
    ) as info:
        cam.check_size(320, 240, "--intrinsics")
    assert "\n" not in str(info.value)


def test_load_camera_every_source(tmp_path):
    expected = Camera(500.0, 510.0, 319.5, 239.5, 640, 480)
    assert load_camera("500,510,319.5,239.5", 640, 480) == expected
    (tmp_path / "k4.txt").write_text("500 510 319.5 239.5\n")
    assert load_camera(tmp_path / "k4.txt", 640, 480) == expected
    np.savetxt(tmp_path / "k.txt", expected.K)
    assert load_camera(str(tmp_path / "k.txt"), 640, 480) == expected
    np.save(tmp_path / "k.npy", expected.K)
    assert load_camera(tmp_path / "k.npy", 640, 480) == expected
    (tmp_path / "k.json").write_text(json.dumps(expected.to_dict()))
    assert load_camera(tmp_path / "k.json") == expected
    (tmp_path / "kk.json").write_text(json.dumps({"K": expected.K.tolist()}))
    assert load_camera(tmp_path / "kk.json", 640, 480) == expected


def test_load_camera_errors(tmp_path):
    with pytest.raises(ValueError, match="image size"):
        load_camera("500,510,319.5,239.5")
    with pytest.raises(ValueError, match="4 numbers"):
        load_camera("500,510,319.5", 640, 480)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_camera(tmp_path / "nope.txt", 640, 480)
    (tmp_path / "bad.txt").write_text("1 2 3 4 5\n")
    with pytest.raises(ValueError, match="bad.txt.*got 5 numbers"):
        load_camera(tmp_path / "bad.txt", 640, 480)
    (tmp_path / "k.json").write_text(json.dumps(Camera(5, 5, 1, 1, 64, 48).to_dict()))
    with pytest.raises(ValueError, match="k.json: the intrinsics are for a 64x48 image"):
        load_camera(tmp_path / "k.json", 640, 480)


def _rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def test_poses(tmp_path):
    pose = np.eye(4)
    pose[:3, :3] = _rotation(0.3)
    pose[:3, 3] = [1, 2, 3]
    assert np.allclose(invert_pose(pose) @ pose, np.eye(4), atol=1e-12)
    np.savetxt(tmp_path / "pose.txt", pose)
    assert np.allclose(load_pose(tmp_path / "pose.txt"), pose)
    np.save(tmp_path / "pose.npy", pose[:3])
    assert np.allclose(load_pose(tmp_path / "pose.npy"), pose)
    scaled = pose.copy()
    scaled[:3, :3] *= 2
    np.savetxt(tmp_path / "scaled.txt", scaled)
    with pytest.raises(ValueError, match=r"--pose file .*scaled.txt: not a rigid transform") as info:
        load_pose(tmp_path / "scaled.txt", "--pose")
    assert "\n" not in str(info.value)
    mirror = np.diag([1.0, 1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="det"):
        check_rigid(mirror)
    with pytest.raises(ValueError, match="4x4"):
        check_rigid(np.eye(3))
