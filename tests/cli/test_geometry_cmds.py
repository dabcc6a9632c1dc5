"""``depthlab lidar``, ``refine`` and ``warp`` run as a user runs them: subprocesses, exit codes, files."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import plyfile
import pytest
from PIL import Image

SRC = str(Path(__file__).resolve().parents[2] / "src")
CALIB = "P2: 100 0 50 0 0 100 40 0 0 0 1 0\nR0_rect: 1 0 0 0 1 0 0 0 1\nTr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n"


def depthlab(*args, cwd=tempfile.gettempdir()):  # cwd: a stray default --out never lands in the repo
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "depthlab.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)  # fmt: skip


def one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def frame(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(tmp_path / "000000.png")
    y, z = rng.uniform(-3, 3, 2000), rng.uniform(-2.5, 2.5, 2000)
    np.c_[8.0 + 0.3 * y, y, z, np.zeros(2000)].astype(np.float32).tofile(tmp_path / "000000.bin")
    (tmp_path / "calib.txt").write_text(CALIB)
    return tmp_path


def test_lidar_command(frame):
    out = frame / "out"
    proc = depthlab("lidar", frame / "000000.png", "--scan", frame / "000000.bin", "--calib", frame / "calib.txt",
                    "--method", "linear", "--format", "npy,color,panel,ply", "--out", out, "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "1 completed" in proc.stdout
    assert np.load(out / "000000_depth.npy").shape == (80, 100)
    assert plyfile.PlyData.read(str(out / "000000_points.ply"))["vertex"].count == 8000
    assert "1 already done" in depthlab("lidar", frame / "000000.png", "--scan", frame / "000000.bin", "--calib",
                                        frame / "calib.txt", "--method", "linear", "--format", "npy,color,panel,ply",
                                        "--out", out).stdout  # fmt: skip
    other = depthlab("lidar", frame / "000000.png", "--scan", frame / "000000.bin", "--calib", frame / "calib.txt",
                     "--method", "nearest", "--format", "npy,color,panel,ply", "--out", out)  # fmt: skip
    assert other.returncode == 0 and "0 completed" in other.stdout
    assert "skipped 1: outputs exist from a run with method: 'linear' -> 'nearest'" in other.stdout
    assert (out / "depthlab-results.jsonl").is_file()
    o3d = pytest.importorskip("open3d")
    cloud = o3d.io.read_point_cloud(str(out / "000000_points.ply"))
    assert len(cloud.points) == 8000 and cloud.has_colors() and cloud.has_normals()
    assert np.allclose(np.asarray(cloud.points)[:, 2], np.load(out / "000000_depth.npy").ravel())


def test_lidar_bad_inputs(frame):
    (frame / "short.bin").write_bytes(b"\0" * 30)
    proc = depthlab(
        "lidar",
        frame / "000000.png",
        "--scan",
        frame / "short.bin",
        "--calib",
        frame / "calib.txt",
        "--method",
        "linear",
    )
    one_line_error(proc, "short.bin", "30 bytes is not a whole number of points")
    (frame / "nokey.txt").write_text(CALIB.splitlines()[0] + "\n" + CALIB.splitlines()[1] + "\n")
    proc = depthlab(
        "lidar",
        frame / "000000.png",
        "--scan",
        frame / "000000.bin",
        "--calib",
        frame / "nokey.txt",
        "--method",
        "linear",
    )
    one_line_error(proc, "nokey.txt", "missing 'Tr_velo_to_cam'")
    np.save(frame / "pts.npy", np.array([[0.0, 0.0, 2.0]]))
    proc = depthlab("lidar", frame / "000000.png", "--points", frame / "pts.npy", "--intrinsics", "50,50,49.5,39.5",
                    "--method", "linear", "--out", frame / "o4")  # fmt: skip
    assert proc.returncode == 0, proc.stderr  # 4 numbers carry no size: taken as the image's
    proc = depthlab("lidar", frame / "000000.png", "--points", frame / "pts.npy", "--intrinsics", "50,50,319.5,239.5",
                    "--method", "linear", "--out", frame / "o2")  # fmt: skip
    one_line_error(proc, "pts.npy", "none of its 1 points lands in the 100x80 image")
    (frame / "k.json").write_text(
        '{"fx": 50, "fy": 50, "cx": 319.5, "cy": 239.5, "width": 640, "height": 480}'
    )
    proc = depthlab("lidar", frame / "000000.png", "--points", frame / "pts.npy", "--intrinsics", frame / "k.json",
                    "--method", "linear", "--out", frame / "o3")  # fmt: skip
    one_line_error(proc, "k.json", "for a 640x480 image but the image is 100x80")


def test_refine_command(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(tmp_path / "view.png")
    depth = np.full((32, 40), 3.0, np.float32)
    np.save(tmp_path / "depth.npy", depth)
    np.save(tmp_path / "conf.npy", rng.uniform(0, 1, (32, 40)))
    proc = depthlab("refine", tmp_path / "view.png", "--depth", tmp_path / "depth.npy", "--confidence", tmp_path / "conf.npy",
                    "--confidence-quantile", "0.3", "--method", "linear", "--out", tmp_path / "out")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "kept 70.0% of the pixels" in proc.stdout
    assert np.allclose(np.load(tmp_path / "out" / "view_refined_depth.npy"), 3.0)
    proc = depthlab("refine", tmp_path / "view.png", "--depth", tmp_path / "depth.npy", "--confidence", tmp_path / "conf.npy",
                    "--method", "linear", "--out", tmp_path / "out2")  # fmt: skip
    one_line_error(proc, "--min-confidence", "--confidence-quantile")


def test_warp_command(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "view.png")
    np.save(tmp_path / "depth.npy", np.full((36, 48), 4.0, np.float32))
    pose = np.eye(4)
    pose[0, 3] = 0.5
    np.savetxt(tmp_path / "pose.txt", pose)
    proc = depthlab("warp", tmp_path / "view.png", "--depth", tmp_path / "depth.npy", "--intrinsics", "40,40,23.5,17.5",
                    "--pose", tmp_path / "pose.txt", "--out", tmp_path / "out")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    partial = np.load(tmp_path / "out" / "view_warped_partial.npy")
    known = np.asarray(Image.open(tmp_path / "out" / "view_warped_known.png"))[..., 0] > 0
    assert np.array_equal(known, partial > 0) and 0.5 < known.mean() < 1
    # with the target view's RGB the depth is completed
    proc = depthlab("warp", tmp_path / "view.png", "--depth", tmp_path / "depth.npy", "--intrinsics", "40,40,23.5,17.5",
                    "--pose", tmp_path / "pose.txt", "--target-image", tmp_path / "view.png", "--method", "linear",
                    "--format", "npy,glb", "--out", tmp_path / "out2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert np.allclose(np.load(tmp_path / "out2" / "view_warped_depth.npy"), 4.0, atol=1e-4)
    o3d = pytest.importorskip("open3d")
    mesh = o3d.io.read_triangle_mesh(str(tmp_path / "out2" / "view_warped_mesh.glb"))
    assert len(mesh.triangles) == 2 * 35 * 47  # a plane: every grid square kept
    assert np.allclose(np.asarray(mesh.vertices)[:, 2], -4.0, atol=1e-4)  # OpenGL: z backward
    # bad inputs: a pose that is not rigid, intrinsics for another image size
    np.savetxt(tmp_path / "scaled.txt", np.diag([2.0, 2.0, 2.0, 1.0]))
    proc = depthlab("warp", tmp_path / "view.png", "--depth", tmp_path / "depth.npy", "--intrinsics", "40,40,23.5,17.5",
                    "--pose", tmp_path / "scaled.txt", "--out", tmp_path / "out3")  # fmt: skip
    one_line_error(proc, "--pose file", "scaled.txt", "not a rigid transform")
    np.savetxt(tmp_path / "k.txt", [40, 40, 23.5, 17.5, 640, 480])
    proc = depthlab("warp", tmp_path / "view.png", "--depth", tmp_path / "depth.npy", "--intrinsics", tmp_path / "k.txt",
                    "--pose", tmp_path / "pose.txt", "--out", tmp_path / "out4")  # fmt: skip
    one_line_error(proc, "k.txt", "640x480", "48x36")


def test_complete_format_ply(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    depth = np.full((24, 32), 2.0, np.float32)
    depth[8:16, 10:20] = 0  # the hole to complete
    np.save(tmp_path / "a_depth.npy", depth)
    common = (
        "complete",
        tmp_path / "a.png",
        "--method",
        "linear",
        "--intrinsics",
        "30,30,15.5,11.5",
        "--quiet",
    )
    proc = depthlab(*common, "--format", "npy,ply", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    vertex = plyfile.PlyData.read(str(tmp_path / "out" / "a_points.ply"))["vertex"]
    assert vertex.count == 80 and [p.name for p in vertex.properties][:6] == ["x", "y", "z", "nx", "ny", "nz"]
    assert np.allclose(vertex["z"], 2.0, atol=1e-4)  # the completed region only, on the plane
    rows, cols = np.mgrid[8:16, 10:20]
    assert np.allclose(np.sort(vertex["x"]), np.sort(((cols - 15.5) * 2.0 / 30).ravel()), atol=1e-4)
    assert np.array_equal(np.sort(vertex["red"]), np.sort(rgb[8:16, 10:20, 0].ravel()))
    proc = depthlab(*common, "--format", "ply", "--ply-region", "all", "--out", tmp_path / "all")
    assert plyfile.PlyData.read(str(tmp_path / "all" / "a_points.ply"))["vertex"].count == 24 * 32
    proc = depthlab(
        "complete", tmp_path / "a.png", "--method", "linear", "--format", "ply", "--out", tmp_path / "x"
    )
    one_line_error(proc, "--format ply needs --intrinsics")
    proc = depthlab("complete", tmp_path / "a.png", "--method", "linear", "--format", "ply", "--intrinsics", "30,30,15.5,11.5,64,48",
                    "--out", tmp_path / "y")  # fmt: skip
    assert proc.returncode != 0 and "for a 64x48 image but the image is 32x24" in proc.stderr
