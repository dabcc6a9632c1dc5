"""Run the worked examples of docs/geometry.md on the real frames in ../shared/datasets and draw its figures.

    python examples/geometry_figures.py [--work /tmp/depthlab-geometry] [--method guided]

Every depth result comes from the ``depthlab`` commands exactly as the doc writes them (run as
subprocesses); this script only prepares inputs the doc tells the user to bring (a rough map, a
pose, an inpainted RGB) and composes the pictures into ``docs/figures/``. Dataset files are read
from ``../shared/datasets`` and never copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from depthlab.geometry import (
    Camera,
    PointCloud,
    invert_pose,
    load_camera,
    read_kitti_calib,
    render_points,
    unproject,
)
from depthlab.geometry.export import read_ply
from depthlab.visualize import colorize

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "datasets"
KITTI = DATA / "kuixu__kitti_object_vis" / "data" / "object" / "training"
NYU = DATA / "stepi2299__eadir2" / "data" / "nyu_samples" / "nyu2_test"
NYU_K = "518.8579,519.4696,325.5824,253.7362"
FIGURES = REPO / "docs" / "figures"


def run(command: str, work: Path) -> float:
    """Run one documented command in ``work``; return its wall time."""
    print(f"$ {command}", flush=True)  # noqa: T201
    argv = shlex.split(command)
    assert argv[0] == "depthlab"
    # the `depthlab` console script of this checkout (python -m depthlab.cli with its src/ first)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "depthlab.cli", *argv[1:]], cwd=work, capture_output=True, text=True, env=env
    )
    print(proc.stdout.strip())  # noqa: T201
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {proc.stderr}")
    return time.perf_counter() - start


def label(image: np.ndarray, text: str) -> np.ndarray:
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, 8 + 7 * len(text), 16], fill=(255, 255, 255))
    draw.text((4, 2), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def grid(rows: list[list[np.ndarray]], width: int) -> np.ndarray:
    """Tiles resized to ``width`` each, rows stacked (tiles of one row share their height)."""
    out = []
    for row in rows:
        tiles = [
            cv2.resize(t, (width, round(t.shape[0] * width / t.shape[1])), interpolation=cv2.INTER_AREA)
            for t in row
        ]
        height = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in tiles]
        out.append(np.pad(np.concatenate(tiles, axis=1), ((0, 4), (0, 0), (0, 0)), constant_values=255))
    widest = max(r.shape[1] for r in out)
    return np.concatenate(
        [np.pad(r, ((0, 0), (0, widest - r.shape[1]), (0, 0)), constant_values=255) for r in out]
    )


def sparse_picture(depth: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Sparse points dilated to 3x3 so they are visible, on black."""
    grown = cv2.dilate(np.where(depth > 0, -depth, -1e9).astype(np.float32), np.ones((3, 3), np.uint8))
    grown = np.where(grown > -1e8, -grown, 0)
    picture = colorize(grown, vmin=vmin, vmax=vmax)
    picture[grown <= 0] = 0
    return picture


def look_from(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world pose (OpenCV axes) at ``eye`` looking at ``target``, world y down."""
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = eye
    return pose


def side_view(
    cloud: PointCloud, camera: Camera, eye: np.ndarray, target: np.ndarray, radius: int = 1
) -> np.ndarray:
    return render_points(cloud, camera, invert_pose(look_from(eye, target)), splat_radius=radius)


# ----------------------------------------------------------------------------------------------
def lidar_example(work: Path, method: str) -> dict:
    seconds = run(
        f"depthlab lidar {KITTI} --method lidar --holdout ratio:90 --format npy,panel,ply,sparse --out lidar --quiet",
        work,
    )
    seconds_guided = run(
        f"depthlab lidar {KITTI}/image_2/000000.png --scan {KITTI}/velodyne/000000.bin --calib {KITTI}/calib/000000.txt "
        f"--method {method} --format npy,ply --out lidar_{method} --quiet",
        work,
    )
    metrics = json.loads((work / "lidar" / "000000_metrics.json").read_text())
    rgb = np.asarray(Image.open(KITTI / "image_2" / "000000.png").convert("RGB"))
    sparse = np.load(work / "lidar" / "000000_sparse.npy")
    dense = np.load(work / "lidar" / "000000_depth.npy")
    dense_guided = np.load(work / f"lidar_{method}" / "000000_depth.npy")
    vmin, vmax = 4.0, 40.0
    cloud = read_ply(work / f"lidar_{method}" / "000000_points.ply")
    keep = cloud.points[:, 2] < 40  # the sky has no LiDAR: leave the far fill out of the 3D view
    camera = read_kitti_calib(KITTI / "calib" / "000000.txt").camera(rgb.shape[1], rgb.shape[0])
    view_camera = Camera(
        camera.fx * 0.6, camera.fy * 0.6, camera.cx, camera.cy + 60, camera.width, camera.height + 120
    )
    view = side_view(
        cloud.select(keep), view_camera, np.array([-8.0, -9.0, -6.0]), np.array([0.0, 1.0, 18.0])
    )
    figure = grid(
        [
            [label(rgb, "KITTI object 000000"), label(sparse_picture(sparse, vmin, vmax), f"velodyne projected ({(sparse > 0).mean():.1%} of the pixels)")],
            [label(colorize(dense, vmin=vmin, vmax=vmax), "depthlab lidar --method lidar"),
             label(colorize(dense_guided, vmin=vmin, vmax=vmax), f"depthlab lidar --method {method}")],
            [label(view, f"--format ply ({method}), seen from above-left, z < 40 m")],
        ],
        620,
    )  # fmt: skip
    Image.fromarray(figure).save(FIGURES / "geometry_lidar.png", optimize=True)
    return {
        "holdout": metrics,
        "seconds": seconds,
        f"seconds_{method}": seconds_guided,
        "coverage": float((sparse > 0).mean()),
    }


def refine_example(work: Path, method: str) -> dict:
    rgb = np.asarray(Image.open(NYU / "00000_colors.png").convert("RGB"))
    gt = np.asarray(Image.open(NYU / "00000_depth.png")).astype(np.float32) / 1000.0
    camera = load_camera(NYU_K, rgb.shape[1], rgb.shape[0])
    # a DUSt3R-like rough map (simulated): 1 % ripple where confident; in low-confidence blobs and
    # along depth edges 10-25 % wrong, as a pointmap regressor is on thin structures and far regions
    rng = np.random.default_rng(0)
    blobs = cv2.GaussianBlur(rng.normal(size=gt.shape).astype(np.float32), (0, 0), 25) > 0.012
    laplacian = np.abs(cv2.Laplacian(gt, cv2.CV_32F, ksize=5))
    edges = cv2.dilate((laplacian > 0.5).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    wrong = blobs | edges
    error = cv2.GaussianBlur(rng.uniform(0.10, 0.25, gt.shape).astype(np.float32), (0, 0), 8)
    ripple = 0.01 * np.sin(np.arange(gt.shape[1]) / 9.0)[None]
    rough = gt * np.where(wrong, 1.0 + error, 1.0 + ripple)
    confidence = np.where(wrong, 1.0, 5.0) + rng.uniform(0, 0.5, gt.shape)
    np.save(work / "pts3d.npy", unproject(rough, camera).points.reshape(*gt.shape, 3))
    np.save(work / "conf.npy", confidence.astype(np.float32))
    Image.fromarray(rgb).save(work / "nyu_00000.png")
    seconds = run(
        f"depthlab refine nyu_00000.png --depth pts3d.npy --confidence conf.npy --min-confidence 2 "
        f"--method {method} --out refine --quiet",
        work,
    )
    refined = np.load(work / "refine" / "nyu_00000_refined_depth.npy")
    before = float(np.mean(np.abs(rough - gt) / gt))
    after = float(np.mean(np.abs(refined - gt) / gt))
    kept = confidence >= 2
    vmin, vmax = float(gt.min()), float(gt.max())
    error_before = colorize(np.abs(rough - gt), vmin=0, vmax=0.3, cmap="magma")
    error_after = colorize(np.abs(refined - gt), vmin=0, vmax=0.3, cmap="magma")
    figure = grid(
        [
            [label(rgb, "NYUv2 test 00000"), label(colorize(rough, vmin=vmin, vmax=vmax), "rough pointmap z (simulated)"),
             label(np.repeat((kept * 255).astype(np.uint8)[..., None], 3, 2), "kept: confidence >= 2 (white)")],
            [label(colorize(refined, vmin=vmin, vmax=vmax), f"depthlab refine --method {method}"),
             label(error_before, f"|rough - GT| (AbsRel {before:.3f})"),
             label(error_after, f"|refined - GT| (AbsRel {after:.3f})")],
        ],
        420,
    )  # fmt: skip
    Image.fromarray(figure).save(FIGURES / "geometry_refine.png", optimize=True)
    return {"abs_rel_rough": before, "abs_rel_refined": after, "seconds": seconds}


def ply_example(work: Path, method: str) -> dict:
    rgb = np.asarray(Image.open(NYU / "00001_colors.png").convert("RGB"))
    gt = np.asarray(Image.open(NYU / "00001_depth.png")).astype(np.float32) / 1000.0
    holed = gt.copy()
    holed[140:340, 220:440] = 0  # the region to inpaint (e.g. a removed object)
    Image.fromarray(rgb).save(work / "nyu_00001.png")
    np.save(work / "nyu_00001_depth.npy", holed)
    seconds = run(
        f"depthlab complete nyu_00001.png --depth nyu_00001_depth.npy --method {method} "
        f"--intrinsics {NYU_K} --format npy,panel,ply --ply-region unknown --out ply --quiet",
        work,
    )
    camera = load_camera(NYU_K, rgb.shape[1], rgb.shape[0])
    completed = read_ply(work / "ply" / "nyu_00001_points.ply")
    known = unproject(holed, camera, rgb=(rgb * 0.35 + 150).astype(np.uint8))
    both = PointCloud.concatenate([known, completed])
    centre = np.median(completed.points, axis=0)
    view = side_view(both, camera, centre + np.array([-2.2, -1.2, -2.4]), centre)
    panel = np.asarray(Image.open(work / "ply" / "nyu_00001_panel.png").convert("RGB"))
    figure = grid(
        [[panel], [label(view, "the PLY's points (colour) among the known depth (pale), oblique view")]], 900
    )
    Image.fromarray(figure).save(FIGURES / "geometry_ply.png", optimize=True)
    return {"points": len(completed), "seconds": seconds}


def inpaint_telea(rgb: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """A stand-in RGB inpainter for the example (OpenCV Telea); use a diffusion inpainter for real scenes."""
    return cv2.inpaint(rgb, unknown.astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)


def warp_example(work: Path, method: str) -> dict:
    from depthlab.applications.scene import Scene

    rgb = np.asarray(Image.open(NYU / "00008_colors.png").convert("RGB"))
    gt = np.asarray(Image.open(NYU / "00008_depth.png")).astype(np.float32) / 1000.0
    camera = load_camera(NYU_K, rgb.shape[1], rgb.shape[0])
    Image.fromarray(rgb).save(work / "nyu_00008.png")
    np.save(work / "nyu_00008_depth.npy", gt)
    angle = np.radians(-12.0)
    pose = np.eye(4)
    pose[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    pose[:3, 3] = [0.4, 0.0, 0.3]
    np.savetxt(work / "pose.txt", pose)
    seconds = run(
        f"depthlab warp nyu_00008.png --depth nyu_00008_depth.npy --intrinsics {NYU_K} --pose pose.txt --out warp",
        work,
    )
    warped_rgb = np.asarray(Image.open(work / "warp" / "nyu_00008_warped_rgb.png").convert("RGB"))
    known = np.asarray(Image.open(work / "warp" / "nyu_00008_warped_known.png"))[..., 0] > 0
    Image.fromarray(inpaint_telea(warped_rgb, ~known)).save(work / "inpainted.png")
    seconds_target = run(
        f"depthlab warp nyu_00008.png --depth nyu_00008_depth.npy --intrinsics {NYU_K} --pose pose.txt "
        f"--target-image inpainted.png --method {method} --out warp_done",
        work,
    )
    completed = np.load(work / "warp_done" / "nyu_00008_warped_depth.npy")
    partial = np.load(work / "warp" / "nyu_00008_warped_partial.npy")
    vmin, vmax = float(gt.min()), float(gt.max())
    # the scene loop: three more poses, only new points are added
    scene = Scene(camera, method=method, inpainter=inpaint_telea)
    scene.add_first_view(rgb, gt)
    poses = []
    for step in range(1, 4):
        a = np.radians(-10.0 * step)
        p = np.eye(4)
        p[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        p[:3, 3] = [0.25 * step, 0.0, 0.2 * step]
        poses.append(p)
        scene.add_view(p)
    centre = np.median(scene.cloud.points, axis=0)
    top = side_view(scene.cloud, camera, centre + np.array([-1.0, -2.0, -3.5]), centre)
    figure = grid(
        [
            [label(rgb, "source view (NYUv2 00008)"), label(warped_rgb, "warped RGB (pose.txt)"),
             label(colorize(partial, vmin=vmin, vmax=vmax, invalid_mask=~known), "warped depth (black: unknown)")],
            [label(np.asarray(Image.open(work / "inpainted.png")), "user's inpainting (here: OpenCV Telea)"),
             label(colorize(completed, vmin=vmin, vmax=vmax), f"completed (--target-image, {method})"),
             label(top, f"Scene over 4 views: {len(scene.cloud)} points, from above-behind")],
        ],
        420,
    )  # fmt: skip
    Image.fromarray(figure).save(FIGURES / "geometry_warp.png", optimize=True)
    return {
        "known_fraction": float(known.mean()),
        "scene_points": [s.new_points for s in scene.steps],
        "seconds": seconds,
        "seconds_target": seconds_target,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--work", default="/tmp/depthlab-geometry", help="scratch folder for inputs and outputs"
    )
    parser.add_argument(
        "--method", default="guided", help="classical method for the examples (no weights here)"
    )
    args = parser.parse_args()
    if not (KITTI / "velodyne" / "000000.bin").is_file() or not NYU.is_dir():
        sys.exit(f"needs the real frames in {DATA}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    results = {
        "lidar": lidar_example(work, args.method),
        "refine": refine_example(work, args.method),
        "ply": ply_example(work, args.method),
        "warp": warp_example(work, args.method),
    }
    print(json.dumps(results, indent=1))  # noqa: T201


if __name__ == "__main__":
    main()
