"""Refine a rough dense depth map (DUSt3R / MASt3R / VGGT): low-confidence pixels become unknown and are re-completed.

The rough map is kept where its confidence is high (``confidence >= min_confidence``, or above
the ``confidence_quantile`` of the map's confidences) and re-completed elsewhere:

* **DepthLab** runs with ``refine=True``: the whole rough map is the initial guess and the
  confident pixels are the known depth.
* **classical methods** (``guided``, ``linear``, ...) fill the unknown pixels from the confident ones.

Either way the output is in the units and scale of the input (the confident pixels are the known
depth the result is aligned to); :attr:`RefineResult.scale_ratio` reports the median ratio
output / input over the confident pixels (1 for the classical methods, which keep them exactly).

A pointmap ``[H, W, 3]`` in the camera frame (DUSt3R's ``pts3d`` of the reference view) is
accepted as the depth input: its third coordinate is the z-depth.
"""

from __future__ import annotations

import os
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
from depthlab.geometry import load_camera
from depthlab.outputs import DepthLabOutput

__all__ = [
    "RefineConfig",
    "RefineResult",
    "read_rough_depth",
    "read_confidence",
    "confidence_mask",
    "refine_depth",
    "run_refine",
    "REFINE_FORMATS",
]

REFINE_FORMATS = ("npy", "png16", "color", "panel", "ply", "glb")


def _depth_from_array(array: np.ndarray, where: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 3:
        return array[..., 2].astype(np.float32)  # pointmap in the camera frame: z is the depth
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[2]):
        array = array.reshape(array.shape[0] if array.shape[2] == 1 else array.shape[1], -1)
    if array.ndim != 2:
        raise ValueError(
            f"{where}: expected a depth map [H, W] or a pointmap [H, W, 3]; got shape {array.shape}"
        )
    return array.astype(np.float32)


def read_rough_depth(
    path: str | os.PathLike, *, scale: float | None = None, key: str | None = None
) -> np.ndarray:
    """Read a rough depth map, or a camera-frame pointmap ``[H, W, 3]`` (``.npy``/``.npz``) -> z-depth ``[H, W]``."""
    path = Path(path)
    if path.suffix.lower() in (".npy", ".npz") and path.is_file():
        try:
            if path.suffix.lower() == ".npy":
                array = np.load(path, allow_pickle=False)
            else:
                with np.load(path, allow_pickle=False) as archive:
                    names = list(archive.files)
                    if key is None and len(names) != 1:
                        raise ValueError(
                            f"{path} holds several arrays ({', '.join(names)}); name one with --depth-key"
                        )
                    array = archive[key or names[0]]
        except ValueError:
            raise
        except Exception as error:
            raise ValueError(f"cannot read depth {path}: {error}") from None
        depth = _depth_from_array(array, f"--depth {path}")
        return depth / np.float32(scale) if scale else depth
    return io.read_depth(path, scale=scale, key=key)


def read_confidence(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read a confidence map ``[H, W]`` (``.npy``/``.npz``/image/TIFF; raw values, higher = more confident)."""
    path = Path(path)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        return (
            io.read_depth(path, scale=1.0)
            if path.suffix.lower() == ".png"
            else io.read_image(path)[..., 0].astype(np.float32)
        )
    array = (
        read_rough_depth(path, key=key)
        if path.suffix.lower() in (".npy", ".npz")
        else io.read_depth(path, key=key)
    )
    return np.asarray(array, np.float32)


def confidence_mask(
    depth: np.ndarray,
    confidence: np.ndarray | None = None,
    *,
    min_confidence: float | None = None,
    confidence_quantile: float | None = None,
) -> tuple[np.ndarray, float | None]:
    """``(known_mask, threshold)``: pixels with a valid depth and ``confidence >= threshold``.

    Args:
        depth: ``[H, W]`` rough depth (0/non-finite = no value).
        confidence: ``[H, W]`` confidence, or None (every valid pixel is known).
        min_confidence: absolute threshold.
        confidence_quantile: in [0, 1): the threshold is this quantile of the confidences of the
            valid pixels (0.3 -> the least confident 30 % become unknown).
    """
    valid = np.isfinite(depth) & (depth > 0)
    if confidence is None:
        if min_confidence is not None or confidence_quantile is not None:
            raise ValueError("--min-confidence / --confidence-quantile need a --confidence map")
        return valid, None
    confidence = np.asarray(confidence, np.float64)
    if confidence.shape != depth.shape:
        raise ValueError(
            f"--confidence has shape {confidence.shape} but the depth has {depth.shape}; they must be aligned"
        )
    if (min_confidence is None) == (confidence_quantile is None):
        raise ValueError(
            "give exactly one of --min-confidence X or --confidence-quantile Q with --confidence"
        )
    usable = valid & np.isfinite(confidence)
    if not usable.any():
        raise ValueError("--confidence: no pixel has both a valid depth and a finite confidence")
    if confidence_quantile is not None:
        q = float(confidence_quantile)
        if not 0 <= q < 1:
            raise ValueError(f"--confidence-quantile must be in [0, 1); got {confidence_quantile!r}")
        threshold = float(np.quantile(confidence[usable], q))
    else:
        threshold = float(min_confidence)
    known = usable & (confidence >= threshold)
    if not known.any():
        raise ValueError(f"no pixel has confidence >= {threshold:g} (--min-confidence); lower the threshold")
    return known, threshold


@dataclass
class RefineResult:
    """A refined map.

    Attributes:
        output: the completion; ``output.depth`` float32 ``[H, W]`` in the input's units.
        known_mask: bool ``[H, W]``, the confident pixels that were kept.
        threshold: the confidence threshold used (None without a confidence map).
        scale_ratio: median of output / input over the kept pixels (1 = scale kept).
    """

    output: DepthLabOutput
    known_mask: np.ndarray
    threshold: float | None
    scale_ratio: float


def refine_depth(
    image: np.ndarray,
    depth: np.ndarray,
    confidence: np.ndarray | None = None,
    *,
    min_confidence: float | None = None,
    confidence_quantile: float | None = None,
    method: str | MethodChoice = "auto",
    seed: int | None = 0,
    depthlab_options: dict[str, Any] | None = None,
    show_progress_bar: bool = False,
) -> RefineResult:
    """Refine a rough dense depth map (see the module docstring).

    Args:
        image: uint8 ``[H, W, 3]``.
        depth: rough z-depth ``[H, W]`` or a camera-frame pointmap ``[H, W, 3]``.
        confidence: ``[H, W]`` (higher = better), or None (keep every valid pixel).
        min_confidence: absolute confidence threshold (or ``confidence_quantile``, not both).
        confidence_quantile: the threshold as a quantile of the confidences, in [0, 1).
        method: a method name or a loaded :class:`~depthlab.applications.MethodChoice`.
        seed: DepthLab's noise seed.
        depthlab_options: further DepthLab call options (``refine=True`` is always set).
        show_progress_bar: DepthLab's denoising bar.
    """
    from depthlab import classical

    depth = _depth_from_array(np.asarray(depth), "`depth`")
    known, threshold = confidence_mask(
        depth, confidence, min_confidence=min_confidence, confidence_quantile=confidence_quantile
    )
    choice = method if isinstance(method, MethodChoice) else choose_method(method)
    if choice.name == "depthlab":
        options = {**(depthlab_options or {}), "refine": True}
        valid = np.isfinite(depth) & (depth > 0)
        # refine=True takes the whole map as the initial guess: it must be finite everywhere
        guess = depth if valid.all() else classical.nearest(np.where(valid, depth, 0.0), valid)
        output = run_completion(
            choice, image, guess.astype(np.float32), known, seed=seed, depthlab_options=options,
            show_progress_bar=show_progress_bar,
        )  # fmt: skip
    else:
        output = run_completion(choice, image, np.where(known, depth, 0.0).astype(np.float32), known)
    completed = np.asarray(output.depth, np.float64)
    ratio = float(np.median(completed[known] / depth[known]))
    return RefineResult(output, known, threshold, ratio)


@dataclass
class RefineConfig:
    """A ``depthlab refine`` run as plain values (what the CLI fills in).

    Attributes:
        image: RGB image file.
        depth: rough depth file (``.npy``/``.npz`` map or pointmap, PNG/TIFF/PFM/EXR map).
        confidence: confidence map file, or None.
        min_confidence / confidence_quantile: the threshold (exactly one with ``confidence``).
        depth_scale / depth_key: how to read the depth file (integer PNG scale, ``.npz`` key).
        intrinsics: ``fx,fy,cx,cy`` or a K file, for ``ply``/``glb``.
        out: output folder; outputs are ``<out>/<image stem>_refined<suffix>``.
        method / formats / depthlab_options / checkpoints / device / dtype / seed: as for
            :class:`depthlab.applications.lidar.LidarConfig`.
        out_scale / cmap / vmin / vmax / ply_region / overwrite / progress: outputs.
    """

    image: str
    depth: str
    confidence: str | None = None
    min_confidence: float | None = None
    confidence_quantile: float | None = None
    depth_scale: float | None = None
    depth_key: str | None = None
    intrinsics: str | None = None
    out: str = "outputs"
    method: str = "auto"
    formats: tuple[str, ...] = ("npy", "color", "panel")
    depthlab_options: dict[str, Any] = field(default_factory=dict)
    checkpoints: str | None = None
    device: str | None = None
    dtype: str | None = None
    seed: int = 0
    out_scale: float | None = None
    cmap: str = "Spectral"
    vmin: float | None = None
    vmax: float | None = None
    ply_region: str = "all"
    overwrite: bool = False
    progress: bool = True


def run_refine(config: RefineConfig, *, pipeline: Any = None) -> tuple[RefineResult, dict[str, Path], str]:
    """Read, refine and write one image; returns ``(result, {format: path}, method reason)``."""
    formats = check_formats(config.formats, REFINE_FORMATS)
    rgb = io.read_image(config.image)
    height, width = rgb.shape[:2]
    depth = read_rough_depth(config.depth, scale=config.depth_scale, key=config.depth_key)
    if depth.shape != (height, width):
        raise ValueError(
            f"--depth {config.depth} has size {depth.shape} but the image {config.image} has {(height, width)} (H, W)"
        )
    confidence = None if config.confidence is None else read_confidence(config.confidence)
    camera = None if config.intrinsics is None else load_camera(config.intrinsics, width, height)
    if camera is None and {"ply", "glb"} & set(formats):
        raise ValueError("--format ply/glb needs --intrinsics (fx,fy,cx,cy or a K file)")
    paths = output_paths(Path(config.out) / f"{Path(config.image).stem}_refined", formats)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not config.overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass --overwrite to replace it")
    choice = choose_method(
        config.method,
        pipeline=pipeline,
        checkpoints=config.checkpoints,
        device=config.device,
        dtype=config.dtype,
    )
    result = refine_depth(
        rgb,
        depth,
        confidence,
        min_confidence=config.min_confidence,
        confidence_quantile=config.confidence_quantile,
        method=choice,
        seed=config.seed,
        depthlab_options=config.depthlab_options,
        show_progress_bar=config.progress,
    )
    write_outputs(
        paths,
        rgb=rgb,
        input_depth=depth,
        known_mask=result.known_mask,
        completed=np.asarray(result.output.depth, np.float32),
        camera=camera,
        out_scale=config.out_scale or config.depth_scale,
        cmap=config.cmap,
        vmin=config.vmin,
        vmax=config.vmax,
        ply_region=config.ply_region,
        overwrite=config.overwrite,
    )
    return result, paths, choice.reason
