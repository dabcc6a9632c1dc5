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
from PIL import Image, ImageDraw, ImageFont

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


def label(image: np.ndarray, text: str, size: int | None = None) -> np.ndarray:
    """``text`` on a white strip at the top left; ``size``: font pixels (None: PIL's small bitmap font)."""
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    if size is None:
        draw.rectangle([0, 0, 8 + 7 * len(text), 16], fill=(255, 255, 255))
        draw.text((4, 2), text, fill=(0, 0, 0))
    else:
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = draw.textbbox((4, 2), text, font=font)
        draw.rectangle([0, 0, right + 4, bottom + 3], fill=(255, 255, 255))
        draw.text((4, 2), text, fill=(0, 0, 0), font=font)
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


MATTERPORT = DATA / "tsunghan-wu__Depth-Completion" / "depth_completion" / "data" / "sample" / "sample_data"
MP_SCENE, MP_VIEW = "UwV83HsGsw3", "1f72153b381745a88748fa0ccf977197"


def sensor_confidence(depth: np.ndarray) -> np.ndarray:
    """A confidence computed from a sensor map alone (no GT): pixels from the nearest missing pixel.

    0 where the depth leaves its 5x5 median by more than 2 % (flying pixels at depth edges).
    """
    valid = depth > 0
    distance = cv2.distanceTransform(valid.astype(np.uint8), cv2.DIST_L2, 3)
    median = cv2.medianBlur(depth.astype(np.float32), 5)
    outlier = np.abs(depth - median) > 0.02 * np.maximum(median, 0.1)
    return np.where(valid & ~outlier, distance, 0.0).astype(np.float32)


def relative_error_picture(depth: np.ndarray, gt: np.ndarray, top: float = 0.10) -> np.ndarray:
    """|depth - gt| / gt in [0, top] (magma); pixels without a value (or without GT) grey."""
    scored = (depth > 0) & (gt > 0)
    error = np.where(scored, np.abs(depth - gt) / np.where(gt > 0, gt, 1.0), 0.0)
    picture = colorize(error.astype(np.float32), vmin=0.0, vmax=top, cmap="magma")
    picture[~scored] = 128
    return picture


def refine_example(work: Path, method: str) -> dict:
    """Real sensor depth (Matterport3D raw) refined, scored against the depth rendered from the scene mesh."""
    folder = MATTERPORT / MP_SCENE
    rgb_path = folder / "undistorted_color_images" / f"resize_{MP_VIEW}_i1_3.jpg"
    raw_path = folder / "undistorted_depth_images" / f"resize_{MP_VIEW}_d1_3.png"
    gt = (
        np.asarray(Image.open(folder / "render_depth" / f"resize_{MP_VIEW}_d1_3_mesh_depth.png"), np.float32)
        / 4000
    )
    raw = np.asarray(Image.open(raw_path), np.float32) / 4000
    gt[gt < 0.1] = 0  # resize artefacts (INVENTORY.md)
    raw[raw < 0.1] = 0
    rgb = np.asarray(Image.open(rgb_path).convert("RGB"))
    confidence = sensor_confidence(raw)
    np.save(work / "mp_confidence.npy", confidence)
    seconds = run(
        f"depthlab refine {rgb_path} --depth {raw_path} --depth-scale 4000 --confidence mp_confidence.npy "
        f"--min-confidence 3 --method {method} --format npy,panel --out refine --overwrite --quiet",
        work,
    )
    refined = np.load(work / "refine" / f"{rgb_path.stem}_refined_depth.npy")
    kept = (confidence >= 3) & (raw > 0)
    measured = (raw > 0) & (gt > 0)
    everywhere = gt > 0

    def abs_rel(depth: np.ndarray, where: np.ndarray) -> float:
        return float(np.mean(np.abs(depth[where] - gt[where]) / gt[where]))

    numbers = {
        "frame": f"{MP_SCENE}/{MP_VIEW}_d1_3",
        "coverage_raw": float((raw > 0).mean()),
        "kept": float(kept.mean()),
        "abs_rel_raw_on_measured": abs_rel(raw, measured),
        "abs_rel_refined_on_measured": abs_rel(refined, measured),
        "abs_rel_refined_on_all": abs_rel(refined, everywhere),
        "bad10_raw_on_measured": float(np.mean(np.abs(raw[measured] - gt[measured]) > 0.1 * gt[measured])),
        "bad10_refined_on_measured": float(
            np.mean(np.abs(refined[measured] - gt[measured]) > 0.1 * gt[measured])
        ),
        "seconds": seconds,
    }
    vmin, vmax = float(np.percentile(gt[everywhere], 1)), float(np.percentile(gt[everywhere], 99))

    def depth_picture(depth: np.ndarray) -> np.ndarray:
        picture = colorize(depth, vmin=vmin, vmax=vmax)
        picture[depth <= 0] = 0
        return picture

    kept_picture = rgb.copy()
    kept_picture[~kept] = (kept_picture[~kept] * 0.25 + np.array([230, 40, 40]) * 0.75).astype(np.uint8)
    n = numbers
    figure = grid(
        [
            [label(rgb, "Matterport3D RGB", 16),
             label(depth_picture(raw), f"rough: raw sensor ({n['coverage_raw']:.0%} measured)", 16),
             label(kept_picture, f"red: re-completed ({1 - n['kept']:.0%})", 16),
             label(depth_picture(gt), "GT: rendered from the mesh", 16)],
            [label(depth_picture(refined), f"depthlab refine --method {method}", 16),
             label(relative_error_picture(raw, gt), f"raw: AbsRel {n['abs_rel_raw_on_measured']:.4f}", 16),
             label(relative_error_picture(np.where(raw > 0, refined, 0), gt), f"refined, same px: {n['abs_rel_refined_on_measured']:.4f}", 16),
             label(relative_error_picture(refined, gt), f"refined, all px: {n['abs_rel_refined_on_all']:.4f}", 16)],
        ],
        400,
    )  # fmt: skip
    legend = np.full((34, figure.shape[1], 3), 255, np.uint8)
    bar = colorize(
        np.tile(np.linspace(0, 0.1, 300, dtype=np.float32), (14, 1)), vmin=0, vmax=0.1, cmap="magma"
    )
    legend[10:24, 330:630] = bar
    canvas = Image.fromarray(legend)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)
    draw.text((8, 8), "bottom row: relative error |d - GT| / GT", fill=(0, 0, 0), font=font)
    draw.text((640, 8), "0 ... 10 %   grey: no value to score", fill=(0, 0, 0), font=font)
    figure = np.concatenate([figure, np.asarray(canvas)])
    Image.fromarray(figure).save(FIGURES / "geometry_refine.png", optimize=True)
    return numbers


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
    parser.add_argument("--only", default=None, help="comma-separated examples to run (default: all)")
    args = parser.parse_args()
    if not (KITTI / "velodyne" / "000000.bin").is_file() or not NYU.is_dir():
        sys.exit(f"needs the real frames in {DATA}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    examples = {"lidar": lidar_example, "refine": refine_example, "ply": ply_example, "warp": warp_example}
    chosen = args.only.split(",") if args.only else list(examples)
    unknown = [name for name in chosen if name not in examples]
    if unknown:
        parser.error(f"--only: unknown example(s) {', '.join(unknown)}; choose from {', '.join(examples)}")
    results = {name: examples[name](work, args.method) for name in chosen}
    print(json.dumps(results, indent=1))  # noqa: T201


if __name__ == "__main__":
    main()
