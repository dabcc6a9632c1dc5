"""LiDAR depth completion: a scan (or points already in the camera frame) + the RGB image -> dense depth.

Inputs, one frame or many (:func:`find_frames`):

* ``IMAGE --scan S.bin --calib C.txt``: a KITTI velodyne scan (float32 ``x, y, z, reflectance``)
  and its calibration (object layout ``P2, R0_rect, Tr_velo_to_cam``; or the raw-data date folder
  with ``calib_cam_to_cam.txt`` + ``calib_velo_to_cam.txt``), projected with
  :func:`depthlab.geometry.scan_to_depth`.
* ``IMAGE --points P.csv|P.npy --intrinsics K``: LiDAR/SfM points already in the camera frame
  (``x, y, z`` per row, OpenCV axes, depth units), z-buffered into the image with
  :func:`depthlab.geometry.project`.
* a folder in the KITTI **object** layout (``image_2/``, ``velodyne/``, ``calib/``, e.g.
  ``training/``) or the **raw** layout (a drive folder ``<date>_drive_<n>_sync`` with
  ``image_02/data/*.png`` and ``velodyne_points/data/*.bin``, its calibration in the date folder
  above it; or the date folder itself, every drive in it).

**Resizing.** DepthLab runs with ``resize_mode="auto"`` by default: a sparse mask (LiDAR covers
~4-6 % of a KITTI image) is resized so that every known point survives at the processing
resolution, instead of the original code's nearest resize that drops most of them (users of the
original reported poor LiDAR results for exactly this reason). Pass ``resize_mode`` in
``depthlab_options`` to change it.

**Resume** goes through the batch results manifest (:mod:`depthlab.batch.manifest`,
``<out>/depthlab-results.jsonl``, the one ``depthlab complete`` keeps): every frame appends a
record (``item`` = the frame key, ``status`` ``ok``/``failed``, the ``settings`` and their
``digest``, the ``outputs`` relative to ``out``, hold-out ``metrics``) as soon as it finishes, so a
killed run loses only the frame in flight. A rerun skips frames finished with the same settings,
retries failed ones, computes only the formats a finished frame lacks, and never mixes outputs of
other settings with new ones (those frames are skipped with the differing settings named;
``overwrite`` recomputes). A frame's files are written all or none. The recorded outputs are
never taken as inputs by a later ``depthlab complete`` on the folder.

**Hold-out scoring** (``holdout="ratio:90"``): the projected points are split with
:func:`depthlab.masks.make_mask` seeded by ``protocol_rng(seed, frame key, protocol)`` -- the same
mask ``depthlab eval`` draws for the ``kitti_object`` dataset -- the method sees the kept part and
is scored on the held-out points (prediction clipped to ``(min_depth, max_depth)``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depthlab import io
from depthlab.applications.common import (
    MethodChoice,
    check_formats,
    choose_method,
    output_paths,
    run_completion,
    write_outputs,
)
from depthlab.batch.options import describe_difference, digest
from depthlab.geometry import Camera, load_camera, project, read_kitti_calib, read_velodyne, scan_to_depth
from depthlab.outputs import DepthLabOutput

__all__ = [
    "LidarConfig",
    "LidarFrame",
    "LidarReport",
    "find_frames",
    "read_camera_points",
    "frame_inputs",
    "complete_lidar",
    "holdout_split",
    "recorded_settings",
    "run_lidar",
    "LIDAR_FORMATS",
]

logger = logging.getLogger(__name__)

LIDAR_FORMATS = ("npy", "png16", "color", "panel", "ply", "glb", "sparse")
_SPARSE_SUFFIX = "_sparse.npy"  # the projected LiDAR depth the method saw (float32, 0 = none)


@dataclass
class LidarFrame:
    """One frame: its image, its LiDAR (scan + calib, or camera-frame points) and output prefix.

    Attributes:
        key: unique name (``"000000"`` in the object layout, ``"<drive>/<frame>"`` in raw).
        image: RGB image file.
        scan: velodyne ``.bin`` (with ``calib``), or None.
        calib: object-layout calib ``.txt`` or a raw-layout date folder, or None.
        points: ``.csv``/``.npy`` camera-frame points (with intrinsics), or None.
        out_prefix: outputs are ``out_prefix + suffix``.
    """

    key: str
    image: Path
    scan: Path | None
    calib: Path | None
    points: Path | None
    out_prefix: Path


@dataclass
class LidarConfig:
    """A ``depthlab lidar`` run as plain values (what the CLI fills in).

    Attributes:
        images: image files or KITTI folders (object or raw layout).
        scan / calib: velodyne ``.bin`` and calibration for a single image (a folder overrides
            nothing: each frame uses its own files, except a ``calib`` given here, used for all).
        points / intrinsics: camera-frame points file and ``fx,fy,cx,cy`` / K file instead of a scan.
        out: output folder.
        method: completion method (``auto``: DepthLab if its weights are found, else ``guided``;
            ``lidar`` is the classical LiDAR fill).
        formats: subset of :data:`LIDAR_FORMATS`.
        depthlab_options: DepthLab call options (``num_inference_steps``, ``processing_resolution``,
            ...); ``resize_mode`` defaults to ``"auto"``.
        checkpoints / device / dtype: DepthLab weights, device and precision.
        seed: DepthLab noise seed and hold-out mask seed.
        holdout: mask protocol for hold-out scoring (``"ratio:90"``), or None.
        min_depth / max_depth: valid range of LiDAR depth for scoring (KITTI: 1e-3 .. 80 m).
        out_scale: 16-bit PNG scale (``png16``; 256 like KITTI).
        cmap / vmin / vmax: colour pictures.
        ply_region: ``all`` or ``unknown`` (only the completed pixels) for ``ply``/``glb``.
        overwrite: recompute frames whose outputs exist.
        progress: show a progress bar.
    """

    images: list[str] = field(default_factory=list)
    scan: str | None = None
    calib: str | None = None
    points: str | None = None
    intrinsics: str | None = None
    out: str = "outputs"
    method: str = "auto"
    formats: tuple[str, ...] = ("npy", "color", "panel")
    depthlab_options: dict[str, Any] = field(default_factory=dict)
    checkpoints: str | None = None
    device: str | None = None
    dtype: str | None = None
    seed: int = 0
    holdout: str | None = None
    min_depth: float = 1e-3
    max_depth: float = 80.0
    out_scale: float | None = 256.0
    cmap: str = "Spectral"
    vmin: float | None = None
    vmax: float | None = None
    ply_region: str = "all"
    overwrite: bool = False
    progress: bool = True


@dataclass
class LidarReport:
    """What a run did: counts, written outputs and hold-out metrics per frame key.

    Attributes:
        skip_reasons: ``{reason: count}`` of the skipped frames (``"done"``: finished earlier with
            the same settings; otherwise why existing outputs were kept).
        manifest: the results manifest (``<out>/depthlab-results.jsonl``).
        metrics: hold-out metrics of every scored frame, computed now or recorded by the run
            that finished it.
    """

    method: str
    reason: str
    done: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    manifest: Path | None = None


# ----------------------------------------------------------------------------------------------
# finding frames
# ----------------------------------------------------------------------------------------------
def _object_base(folder: Path) -> Path | None:
    for candidate in (
        folder,
        folder / "training",
        folder / "object" / "training",
        folder / "data" / "object" / "training",
    ):
        if (candidate / "image_2").is_dir() and (candidate / "velodyne").is_dir():
            return candidate
    return None


def _raw_drives(folder: Path) -> list[Path]:
    if (folder / "image_02" / "data").is_dir():
        return [folder]
    return sorted(d for d in folder.iterdir() if d.is_dir() and (d / "image_02" / "data").is_dir())


def _raw_calib(drive: Path, calib: Path | None) -> Path:
    if calib is not None:
        return calib
    for folder in (drive, drive.parent):
        if (folder / "calib_cam_to_cam.txt").is_file():
            return folder
    raise FileNotFoundError(
        f"no calib_cam_to_cam.txt next to or above the drive {drive} (KITTI raw layout); give --calib DATE_FOLDER"
    )


def find_frames(config: LidarConfig) -> list[LidarFrame]:
    """The frames of a run (see the module docstring for the accepted layouts).

    Raises:
        FileNotFoundError / ValueError: a missing input, or a single-image run without
        ``scan + calib`` or ``points + intrinsics`` (the message names the argument).
    """
    if not config.images:
        raise ValueError("give an IMAGE file or a KITTI folder (object or raw layout)")
    out = Path(config.out)
    calib = None if config.calib is None else Path(config.calib)
    frames: list[LidarFrame] = []
    for spec in config.images:
        path = Path(spec)
        if path.is_file():
            if config.points is not None:
                if config.intrinsics is None:
                    raise ValueError("--points needs --intrinsics (the points are in the camera frame)")
                points = Path(config.points)
                if points.is_dir():
                    matches = [points / f"{path.stem}{s}" for s in (".npy", ".csv", ".txt")]
                    found = next((m for m in matches if m.is_file()), None)
                    if found is None:
                        raise FileNotFoundError(f"--points {points}: no {path.stem}.npy/.csv/.txt for {path}")
                    points = found
                frames.append(LidarFrame(path.stem, path, None, None, points, out / path.stem))
                continue
            if config.scan is None or calib is None:
                raise ValueError(
                    f"IMAGE {path} needs --scan S.bin and --calib C.txt (or --points P --intrinsics K)"
                )
            if len(config.images) > 1:
                raise ValueError(
                    "--scan is one file but several images were given; pass a KITTI folder instead"
                )
            frames.append(LidarFrame(path.stem, path, Path(config.scan), calib, None, out / path.stem))
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"IMAGE {spec!r} is neither a file nor a folder")
        base = _object_base(path)
        if base is not None:
            for image in sorted((base / "image_2").glob("*.png")):
                scan = base / "velodyne" / f"{image.stem}.bin"
                frame_calib = calib or base / "calib" / f"{image.stem}.txt"
                if scan.is_file():
                    frames.append(LidarFrame(image.stem, image, scan, frame_calib, None, out / image.stem))
            continue
        drives = _raw_drives(path)
        if not drives:
            raise ValueError(
                f"IMAGE folder {path} is not in the KITTI object layout (image_2/, velodyne/, calib/) nor the raw "
                "layout (<drive>/image_02/data, <drive>/velodyne_points/data)"
            )
        for drive in drives:
            drive_calib = _raw_calib(drive, calib)
            for image in sorted((drive / "image_02" / "data").glob("*.png")):
                scan = drive / "velodyne_points" / "data" / f"{image.stem}.bin"
                if scan.is_file():
                    key = f"{drive.name}/{image.stem}"
                    frames.append(
                        LidarFrame(key, image, scan, drive_calib, None, out / drive.name / image.stem)
                    )
    if not frames:
        raise ValueError(f"no frame with an image and a velodyne scan found in {', '.join(config.images)}")
    keys = [f.key for f in frames]
    if len(set(keys)) != len(keys):
        raise ValueError("two frames have the same name; run the folders separately (--out per folder)")
    return frames


# ----------------------------------------------------------------------------------------------
# one frame
# ----------------------------------------------------------------------------------------------
def read_camera_points(path: str | os.PathLike) -> np.ndarray:
    """Read camera-frame points ``[N, 3]`` (x right, y down, z forward) from ``.npy`` or ``.csv``/``.txt``.

    ``.npy``: ``[N, >=3]``; text: one point per line, ``x, y, z`` first (commas, spaces or tabs),
    an optional header line and ``#`` comments skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"points file not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            points = np.load(path, allow_pickle=False)
        except Exception as error:
            raise ValueError(f"cannot read points {path}: {error}") from None
    else:
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            text = line.split("#", 1)[0].replace(",", " ").replace(";", " ").split()
            if not text:
                continue
            try:
                rows.append([float(v) for v in text[:3]])
            except ValueError:
                if rows or number > 1:
                    raise ValueError(
                        f"{path} line {number}: expected 'x,y,z' numbers; got {line.strip()!r}"
                    ) from None
                continue  # header
        points = np.asarray(rows, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] < 3 or len(points) == 0:
        raise ValueError(f"points {path}: expected [N, 3] x, y, z; got shape {points.shape}")
    return points[:, :3].astype(np.float64)


def frame_inputs(frame: LidarFrame, intrinsics: str | None = None) -> tuple[np.ndarray, np.ndarray, Camera]:
    """``(rgb uint8 [H, W, 3], sparse depth float32 [H, W], camera)`` of one frame."""
    rgb = io.read_image(frame.image)
    height, width = rgb.shape[:2]
    if frame.points is not None:
        camera = load_camera(intrinsics, width, height)
        points = read_camera_points(frame.points)
        sparse, _ = project(points, camera)
        if not (sparse > 0).any():
            raise ValueError(
                f"--points {frame.points}: none of its {len(points)} points lands in the {width}x{height} image "
                "(check the intrinsics and that the points are in the camera frame, z forward)"
            )
        return rgb, sparse, camera
    if frame.scan is None or frame.calib is None:
        raise ValueError(f"frame {frame.key}: needs a velodyne scan and a calibration")
    calib = read_kitti_calib(frame.calib)
    camera = calib.camera(width, height)
    sparse = scan_to_depth(read_velodyne(frame.scan), calib, width, height)
    if not (sparse > 0).any():
        raise ValueError(f"{frame.scan}: no LiDAR point lands in the {width}x{height} image {frame.image}")
    return rgb, sparse, camera


def holdout_split(
    sparse: np.ndarray, protocol: str, key: str, seed: int, min_depth: float, max_depth: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(valid, known)``: LiDAR pixels in range, and the part given to the method (the eval harness' mask)."""
    from depthlab import masks

    valid = np.isfinite(sparse) & (sparse > min_depth) & (sparse < max_depth)
    known = masks.make_mask(protocol, valid, masks.protocol_rng(seed, key, protocol))
    return valid, known


def complete_lidar(
    image: np.ndarray,
    sparse_depth: np.ndarray,
    known_mask: np.ndarray | None = None,
    method: str | MethodChoice = "auto",
    *,
    seed: int | None = 0,
    depthlab_options: dict[str, Any] | None = None,
    show_progress_bar: bool = False,
) -> DepthLabOutput:
    """Complete a sparse LiDAR depth image guided by the RGB image.

    Args:
        image: uint8 ``[H, W, 3]``.
        sparse_depth: float32 ``[H, W]`` (0 = no point), e.g. from :func:`depthlab.geometry.scan_to_depth`.
        known_mask: which points to trust (default: every point).
        method: a method name or a :class:`~depthlab.applications.MethodChoice` (loaded once).
        seed: DepthLab's noise seed.
        depthlab_options: DepthLab call options; ``resize_mode`` defaults to ``"auto"`` (keeps
            every sparse point at the processing resolution).
        show_progress_bar: DepthLab's denoising bar.
    """
    choice = method if isinstance(method, MethodChoice) else choose_method(method)
    options = dict(depthlab_options or {})
    options.setdefault("resize_mode", "auto")
    known = (
        (np.isfinite(sparse_depth) & (sparse_depth > 0))
        if known_mask is None
        else np.asarray(known_mask, bool)
    )
    return run_completion(
        choice,
        image,
        sparse_depth,
        known,
        seed=seed,
        depthlab_options=options,
        show_progress_bar=show_progress_bar,
    )


def _holdout_metrics(
    completed: np.ndarray, sparse: np.ndarray, valid: np.ndarray, known: np.ndarray, config: LidarConfig
) -> dict[str, float]:
    from depthlab.evaluation.metrics import clip_prediction, compute_metrics, region_mask

    high = config.max_depth if np.isfinite(config.max_depth) else None
    scored = clip_prediction(completed, config.min_depth, high)
    metrics = compute_metrics(scored, sparse, region_mask(valid, known, "unknown"))
    metrics["n_known"] = float(known.sum())
    return metrics


def _frame_paths(frame: LidarFrame, formats: list[str], holdout: bool) -> dict[str, Path]:
    paths = output_paths(frame.out_prefix, [f for f in formats if f != "sparse"])
    if "sparse" in formats:
        paths["sparse"] = Path(f"{frame.out_prefix}{_SPARSE_SUFFIX}")
    if holdout:
        paths["metrics"] = Path(f"{frame.out_prefix}_metrics.json")
    return paths


def _run_frame(
    frame: LidarFrame, config: LidarConfig, choice: MethodChoice, paths: dict[str, Path], single: bool
) -> dict[str, float] | None:
    """Complete one frame and write ``paths`` (all or none); returns its hold-out metrics or None."""
    # 1. inputs
    rgb, sparse, camera = frame_inputs(frame, config.intrinsics)
    known = np.isfinite(sparse) & (sparse > 0)
    valid = None
    if config.holdout:
        valid, known = holdout_split(
            sparse, config.holdout, frame.key, config.seed, config.min_depth, config.max_depth
        )
    # 2. complete
    output = complete_lidar(
        rgb,
        np.where(known, sparse, 0.0).astype(np.float32),
        known,
        choice,
        seed=config.seed,
        depthlab_options=config.depthlab_options,
        show_progress_bar=single and config.progress,
    )
    completed = np.asarray(output.depth, np.float32)
    metrics = None
    if config.holdout:
        metrics = _holdout_metrics(completed, sparse, valid, known, config)
    # 3. write, every file of the frame or none
    extra = {}
    if "sparse" in paths:
        given = np.where(known, sparse, 0.0)
        extra[paths["sparse"]] = lambda tmp: io.write_depth_npy(tmp, given, overwrite=True)
    if "metrics" in paths and metrics is not None:
        text = json.dumps(
            {
                "frame": frame.key,
                "method": choice.name,
                "holdout": config.holdout,
                "seed": config.seed,
                **metrics,
            },
            indent=1,
        )
        extra[paths["metrics"]] = lambda tmp: tmp.write_text(text)
    write_outputs(
        {f: p for f, p in paths.items() if f not in ("sparse", "metrics")},
        rgb=rgb,
        input_depth=sparse,
        known_mask=known,
        completed=completed,
        camera=camera,
        out_scale=config.out_scale,
        cmap=config.cmap,
        vmin=config.vmin,
        vmax=config.vmax,
        ply_region=config.ply_region,
        overwrite=True,  # run_lidar decided which files may be (re)written
        extra=extra,
    )
    return metrics


def recorded_settings(config: LidarConfig, method: str) -> dict[str, Any]:
    """What decides a frame's outputs (JSON values; recorded in the results manifest with its digest).

    DepthLab-only settings are left out for the other methods (the seed stays when it draws the
    hold-out mask).
    """
    values: dict[str, Any] = {
        "command": "lidar",
        "method": method,
        "calib": config.calib,
        "intrinsics": config.intrinsics,
        "holdout": config.holdout,
        "min_depth": config.min_depth,
        "max_depth": config.max_depth,
        "out_scale": config.out_scale,
        "cmap": config.cmap,
        "vmin": config.vmin,
        "vmax": config.vmax,
        "ply_region": config.ply_region,
    }
    if method == "depthlab":
        options = dict(config.depthlab_options)
        options.setdefault("resize_mode", "auto")
        values.update(depthlab_options=options, checkpoints=config.checkpoints, dtype=config.dtype)
    if method == "depthlab" or config.holdout:
        values["seed"] = config.seed
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def _plan_frame(
    paths: dict[str, Path], record: dict[str, Any] | None, settings: dict[str, Any], overwrite: bool
) -> tuple[list[str], dict[str, Any] | None, str | None]:
    """``(formats to write, the frame's last good record, skip reason or None)`` (the batch rule)."""
    base = record.get("previous") if record and record.get("status") != "ok" else record
    formats = list(paths)
    existing = {f for f, p in paths.items() if p.exists()}
    if overwrite:
        return formats, base, None
    if base is not None and base.get("digest") == digest(settings):
        finished = {f for f in base.get("formats", []) if f in paths and paths[f].exists()}
        missing = [f for f in formats if f not in finished]
        if not missing:
            return [], base, "done"
        if existing - finished:
            return [], base, "outputs exist that no recorded run wrote"
        return missing, base, None
    if existing:
        if base is not None:
            return (
                [],
                base,
                f"outputs exist from a run with {describe_difference(base.get('settings', {}), settings)}",
            )
        return [], base, "outputs exist that no recorded run wrote"
    return formats, base, None


def run_lidar(config: LidarConfig, *, pipeline: Any = None) -> LidarReport:
    """Complete every frame of ``config`` and write its outputs; returns a :class:`LidarReport`.

    A single frame raises its error; in a batch a failing frame is recorded (report and results
    manifest) and the run goes on. Resume: see the module docstring.
    """
    from tqdm import tqdm

    from depthlab.batch import check_out_writable, manifest

    start = time.perf_counter()
    formats = check_formats(config.formats, LIDAR_FORMATS)
    if config.vmin is not None and config.vmax is not None and not config.vmax > config.vmin:
        raise ValueError(f"--vmax ({config.vmax}) must be larger than --vmin ({config.vmin})")
    frames = find_frames(config)
    out = check_out_writable(config.out)
    single = len(frames) == 1
    choice = choose_method(
        config.method,
        pipeline=pipeline,
        checkpoints=config.checkpoints,
        device=config.device,
        dtype=config.dtype,
    )
    settings = recorded_settings(config, choice.name)
    settings_digest = digest(settings)
    previous = manifest.load(out)
    report = LidarReport(choice.name, choice.reason)
    writer = manifest.PartWriter(out, tag="lidar")
    bar = tqdm(frames, desc="lidar", unit="frame", disable=not config.progress or single, file=sys.stderr)
    try:
        for frame in bar:
            paths = _frame_paths(frame, formats, bool(config.holdout))
            todo, base, skip = _plan_frame(paths, previous.get(frame.key), settings, config.overwrite)
            if skip is not None:
                report.skipped += 1
                report.skip_reasons[skip] = report.skip_reasons.get(skip, 0) + 1
                if skip == "done" and base and base.get("metrics"):
                    report.metrics[frame.key] = base["metrics"]
                continue
            record: dict[str, Any] = {
                "item": frame.key,
                "method": choice.name,
                "settings": settings,
                "digest": settings_digest,
            }
            kept = [rel for rel in (base or {}).get("outputs", []) if (out / rel).exists()]
            frame_start = time.perf_counter()
            try:
                metrics = _run_frame(frame, config, choice, {f: paths[f] for f in todo}, single)
            except Exception as error:
                message = f"{type(error).__name__}: {error}"
                record.update(status="failed", formats=[], outputs=kept, written=[], previous=base,
                              seconds=round(time.perf_counter() - frame_start, 3), error=message)  # fmt: skip
                writer.write(record)
                if single:
                    raise
                logger.debug("frame %s failed", frame.key, exc_info=True)
                report.failures.append((frame.key, message))
                bar.write(f"depthlab lidar: failed: {frame.key}: {error}", file=sys.stderr)
                continue
            if metrics is None and base is not None and base.get("digest") == settings_digest:
                metrics = base.get("metrics")  # only other formats were missing
            rel = {f: Path(os.path.relpath(p, out)).as_posix() for f, p in paths.items()}
            record.update(
                status="ok",
                formats=sorted(paths),
                outputs=sorted(set(kept) | set(rel.values())),
                written=sorted(rel[f] for f in todo),
                seconds=round(time.perf_counter() - frame_start, 3),
                metrics=metrics,
                error=None,
            )
            writer.write(record)
            report.done += 1
            report.outputs[frame.key] = {f: str(p) for f, p in paths.items()}
            if metrics is not None:
                report.metrics[frame.key] = metrics
    finally:
        bar.close()
        writer.close()
        report.manifest = manifest.merge(out)
    report.seconds = time.perf_counter() - start
    return report
