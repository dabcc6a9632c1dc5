"""What the demo does with an upload, without any UI: read, build the mask, complete, write.

Everything here is plain numpy on top of the public API (:func:`depthlab.complete`,
:mod:`depthlab.io`, :mod:`depthlab.visualize`, :mod:`depthlab.geometry`); :mod:`depthlab.demo.app`
wires it to Gradio. Bad uploads raise :class:`DemoInputError` with a message for the page.

Mask polarity on the page: **painted = to fill**. ``known_mask`` (True = known, the library's
convention) is derived here, once: ``known = depth valid & not painted [& not invalid-and-filled]``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import depthlab
from depthlab import io, visualize

__all__ = [
    "DemoInputError",
    "Upload",
    "Region",
    "RunResult",
    "load_image",
    "load_upload",
    "painted_region",
    "mask_file_region",
    "build_region",
    "overlay",
    "outline",
    "run",
    "FILL_COLOR",
    "DEFAULT_FOV_DEG",
]

FILL_COLOR = (255, 0, 255)
"""Colour of the region to fill on the page (magenta, as in depthlab's panels)."""
_INVALID_TINT = (0, 170, 255)
"""Colour of the pixels the depth file has no value for (cyan), on the painting canvas."""
DEFAULT_FOV_DEG = 60.0
"""Horizontal field of view used for the 3D view when no intrinsics are given."""
MAX_VIEW_POINTS = 400_000
"""The 3D viewer gets at most about this many points (every k-th pixel); the PLY has them all."""


class DemoInputError(ValueError):
    """A problem with what the visitor uploaded or chose; the message is shown on the page."""


@dataclass
class Upload:
    """An RGB image and its depth, read from the uploaded files.

    Attributes:
        rgb: ``uint8 [H, W, 3]``.
        depth: float32 ``[H, W]`` in the units of the file (``stored / scale``); 0/NaN = none.
        valid: bool ``[H, W]``, True where the file has a depth (finite and > 0).
        stem: output file name stem (from the image file name).
        depth_scale: the scale applied to integer depth files (None for float files).
    """

    rgb: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    stem: str
    depth_scale: float | None


@dataclass
class Region:
    """The region to fill and the known mask derived from it (both bool ``[H, W]``).

    ``known = valid & ~fill``; ``empty = ~valid & ~fill`` are pixels with no depth that the
    visitor chose not to fill (they stay empty in the outputs).
    """

    fill: np.ndarray
    known: np.ndarray
    empty: np.ndarray


@dataclass
class RunResult:
    """What one run produced: arrays, pictures, files and a sentence about it."""

    depth: np.ndarray  # float32 [H, W], NaN where left empty
    method: str
    reason: str
    seconds: float
    color: np.ndarray  # uint8 [H, W(+bar), 3], completed depth with the hole outline
    before: np.ndarray  # uint8 [H, W, 3], input depth with the fill region in magenta
    after: np.ndarray  # uint8 [H, W, 3], completed depth, same colour range
    uncertainty: np.ndarray | None  # uint8 [H, W(+bar), 3] or None
    files: list[Path] = field(default_factory=list)
    model3d: Path | None = None
    notes: list[str] = field(default_factory=list)


def _name(path: Any) -> str:
    return Path(str(path)).name


def _clean(error: Exception, *paths: Path) -> str:
    """The error's message with the server-side paths shortened to the uploaded file names."""
    message = str(error)
    for path in paths:
        message = message.replace(str(path), path.name)
    return message


def _integer_depth_file(path: Path) -> bool:
    """True for depth files that store integers and so need a scale (PNG, integer TIFF)."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        return True
    if suffix in (".tif", ".tiff"):
        try:
            io.read_depth(path)  # float TIFF reads without a scale
        except ValueError as error:
            return "scale" in str(error)
    return False


def load_image(rgb_path: Any) -> np.ndarray:
    """Read an uploaded RGB image as ``uint8 [H, W, 3]``; raises :class:`DemoInputError`."""
    path = Path(str(rgb_path))
    try:
        return io.read_image(path)
    except (ValueError, OSError) as error:
        raise DemoInputError(f"Cannot read the RGB image: {_clean(error, path)}") from None


def load_upload(rgb_path: Any, depth_path: Any, depth_scale: float | None) -> Upload:
    """Read an uploaded RGB image and depth file (any format :mod:`depthlab.io` reads).

    Args:
        rgb_path: image file (PNG, JPEG, TIFF, ...).
        depth_path: ``.npy``, ``.npz``, 16-bit ``.png``, ``.tif``, ``.pfm``, ``.exr`` or a
            ``.csv``/``.txt`` list of ``u,v,depth`` points.
        depth_scale: ``stored value / scale = depth`` for integer files (16-bit PNG, integer
            TIFF); float files are read as they are.

    Raises:
        DemoInputError: a missing or unreadable file, sizes that differ, a bad scale.
    """
    if not rgb_path:
        raise DemoInputError("Upload an RGB image (or click the example below).")
    if not depth_path:
        raise DemoInputError("Upload a depth file (or click the example below).")
    rgb_path, depth_path = Path(str(rgb_path)), Path(str(depth_path))
    rgb = load_image(rgb_path)
    height, width = rgb.shape[:2]
    scale = None
    try:
        if _integer_depth_file(depth_path):
            if depth_scale is None or not np.isfinite(depth_scale) or depth_scale <= 0:
                raise DemoInputError(
                    f"{_name(depth_path)} stores integers: set the depth scale to a positive number "
                    f"(1000 for millimetres, 256 for KITTI); got {depth_scale!r}"
                )
            scale = float(depth_scale)
        depth = io.read_depth(depth_path, scale=scale, image_size=(height, width))
    except DemoInputError:
        raise
    except (ValueError, OSError, ImportError) as error:
        raise DemoInputError(f"Cannot read the depth file: {_clean(error, depth_path)}") from None
    if depth.shape != (height, width):
        raise DemoInputError(
            f"The depth is {depth.shape[1]}x{depth.shape[0]} pixels but the image is "
            f"{width}x{height}: they must be pixel-aligned and of the same size."
        )
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        raise DemoInputError(f"{_name(depth_path)} has no valid depth (every pixel is 0, negative or NaN).")
    return Upload(rgb=rgb, depth=depth, valid=valid, stem=rgb_path.stem, depth_scale=scale)


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    picture = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(picture.resize((shape[1], shape[0]), Image.NEAREST)) > 127


def painted_region(layers: list[Any] | None, shape: tuple[int, int]) -> np.ndarray:
    """Pixels painted on any editor layer (alpha >= 128), resized to ``shape`` = ``(H, W)``.

    Args:
        layers: RGBA ``[h, w, 4]`` arrays (the Gradio ImageEditor's layers), or None.
        shape: the image size ``(H, W)``.
    """
    painted = np.zeros(shape, bool)
    for layer in layers or []:
        array = np.asarray(layer)
        if array.ndim != 3 or array.shape[2] != 4:
            continue  # a layer without alpha carries no strokes
        painted |= _resize_mask(array[..., 3] >= 128, shape)
    return painted


def mask_file_region(path: Any, convention: str, shape: tuple[int, int]) -> np.ndarray:
    """Region to fill from an uploaded mask file.

    Args:
        path: mask image or ``.npy``.
        convention: ``"known"`` (white/1 = known, depthlab's files) or ``"fill"`` (white/1 =
            to fill, the original DepthLab's files).
        shape: the image size ``(H, W)``.
    """
    try:
        known = io.read_mask(Path(str(path)), convention=convention, shape=shape)
    except (ValueError, TypeError, OSError) as error:
        raise DemoInputError(f"Cannot use the mask file: {_clean(error, Path(str(path)))}") from None
    return ~known


def build_region(
    upload: Upload, painted: np.ndarray, use_invalid: bool, extra_fill: np.ndarray | None = None
) -> Region:
    """Combine the painted region, a mask file and (optionally) the depth's own holes.

    Raises:
        DemoInputError: nothing to fill, or no known depth left.
    """
    fill = painted.copy()
    if extra_fill is not None:
        fill |= extra_fill
    if use_invalid:
        fill |= ~upload.valid
    known = upload.valid & ~fill
    if not fill.any():
        raise DemoInputError(
            "Nothing to fill: paint the region to fill on the image, or tick "
            "'Also fill the pixels with no depth' (the depth file has "
            f"{int((~upload.valid).sum())} such pixels)."
        )
    if not known.any():
        raise DemoInputError(
            "No known depth left: the region to fill covers every pixel that has a depth. "
            "Erase part of the painted region."
        )
    return Region(fill=fill, known=known, empty=~upload.valid & ~fill)


def outline(region: np.ndarray) -> np.ndarray:
    """Border of ``region``: its pixels next to a pixel outside it (4-neighbourhood), bool ``[H, W]``."""
    padded = np.pad(region, 1, mode="edge")
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return region & ~inner


def _thick(mask: np.ndarray) -> np.ndarray:
    """Grow a thin line by one pixel so it shows in a scaled-down picture."""
    padded = np.pad(mask, 1)
    return mask | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]


def overlay(rgb: np.ndarray, fill: np.ndarray | None = None, invalid: np.ndarray | None = None) -> np.ndarray:
    """The image with the region to fill in magenta and (optionally) depth-less pixels in cyan.

    Args:
        rgb: ``uint8 [H, W, 3]``.
        fill: bool ``[H, W]`` region to fill (tinted magenta, outlined).
        invalid: bool ``[H, W]`` pixels with no depth that are not filled (tinted cyan).

    Returns:
        ``uint8 [H, W, 3]``.
    """
    picture = rgb.astype(np.float32)
    for mask, colour in ((invalid, _INVALID_TINT), (fill, FILL_COLOR)):
        if mask is not None and mask.any():
            picture[mask] = 0.45 * picture[mask] + 0.55 * np.asarray(colour, np.float32)
    result = np.clip(picture, 0, 255).astype(np.uint8)
    if fill is not None and fill.any():
        result[_thick(outline(fill))] = FILL_COLOR
    return result


def _depth_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """Keep only DepthLab's options when DepthLab runs; the classical fills take none here."""
    if method != "depthlab":
        return {}
    chosen = {k: v for k, v in options.items() if v is not None and k != "seed"}
    for key in ("num_inference_steps", "processing_resolution", "ensemble_size"):
        if key in chosen:
            chosen[key] = int(chosen[key])
    if "strength" in chosen:
        chosen["strength"] = float(chosen["strength"])
    if options.get("seed") is not None:
        import torch

        # the pipeline draws its noise on the CPU, so the generator lives there too
        chosen["generator"] = torch.Generator().manual_seed(int(options["seed"]))
    return chosen


def _camera(intrinsics: str | None, fov_deg: float | None, width: int, height: int) -> tuple[Any, str]:
    from depthlab import geometry

    text = (intrinsics or "").strip()
    if text:
        try:
            return geometry.load_camera(text, width=width, height=height), f"intrinsics {text}"
        except (ValueError, TypeError, OSError) as error:
            raise DemoInputError(f"Intrinsics: {error}") from None
    fov = DEFAULT_FOV_DEG if fov_deg is None else float(fov_deg)
    if not 1.0 <= fov <= 179.0:
        raise DemoInputError(f"The field of view must be between 1 and 179 degrees; got {fov:g}")
    return geometry.Camera.from_fov(width, height, fov), f"{fov:g} deg horizontal field of view"


def _write_geometry(
    folder: Path, stem: str, rgb: np.ndarray, depth: np.ndarray, camera: Any, view: str
) -> tuple[Path, Path]:
    """Write the full-resolution PLY and a GLB for the viewer (every k-th pixel, <= MAX_VIEW_POINTS)."""
    from depthlab import geometry

    ply = folder / f"{stem}_points.ply"
    geometry.write_ply(ply, geometry.unproject(depth, camera, rgb=rgb))
    finite = np.isfinite(depth) & (depth > 0)
    step = max(1, int(np.ceil(np.sqrt(finite.sum() / MAX_VIEW_POINTS))))
    if step > 1:  # pixel (s*j, s*i) of the full image is pixel (j, i) of a camera with f/s, c/s
        depth, rgb = depth[::step, ::step], rgb[::step, ::step]
        camera = geometry.Camera(
            camera.fx / step,
            camera.fy / step,
            camera.cx / step,
            camera.cy / step,
            depth.shape[1],
            depth.shape[0],
        )
    glb = folder / f"{stem}_{'mesh' if view == 'mesh' else 'points'}.glb"
    if view == "mesh":
        geometry.write_glb(glb, geometry.depth_to_mesh(depth, camera, rgb=rgb))
    else:
        geometry.write_glb(glb, geometry.unproject(depth, camera, rgb=rgb))
    return ply, glb


def run(
    upload: Upload,
    region: Region,
    method: str,
    folder: str | os.PathLike,
    *,
    options: dict[str, Any] | None = None,
    pipeline: Any = None,
    checkpoints: Any = None,
    out_scale: float | None = None,
    intrinsics: str | None = None,
    fov_deg: float | None = None,
    view: str = "points",
    geometry_files: bool = True,
    progress: Any = None,
) -> RunResult:
    """Complete the upload and write the outputs into ``folder``.

    Args:
        upload: the inputs (:func:`load_upload`).
        region: what to fill (:func:`build_region`).
        method: a :data:`depthlab.completion.METHODS` name.
        folder: where the files go (the session's own temporary folder).
        options: DepthLab's options (``num_inference_steps``, ``strength``,
            ``processing_resolution``, ``ensemble_size``, ``preserve_known``, ``seed``); ignored
            by the classical methods.
        pipeline: a loaded DepthLab pipeline, reused between runs.
        checkpoints: where to look for DepthLab weights when ``pipeline`` is None.
        out_scale: scale of the 16-bit PNG (default: the input's scale, else 1000).
        intrinsics: ``"fx,fy,cx,cy"`` in pixels for the 3D outputs; empty -> ``fov_deg``.
        fov_deg: horizontal field of view in degrees (default :data:`DEFAULT_FOV_DEG`).
        view: ``"points"`` or ``"mesh"`` for the 3D viewer.
        geometry_files: write the PLY and the GLB.
        progress: callable ``(fraction, desc=...)`` (Gradio's progress tracker) or None.

    Returns:
        :class:`RunResult`.
    """
    report = progress or (lambda *args, **kwargs: None)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    chosen_options = _depth_options(method if pipeline is None else "depthlab", options or {})
    height, width = upload.depth.shape
    camera, camera_text = _camera(intrinsics, fov_deg, width, height) if geometry_files else (None, "")

    # 1. complete (the one library call)
    report(0.05, desc=f"completing with {method}")
    try:
        result = depthlab.complete(
            upload.rgb,
            upload.depth,
            region.known,
            method=method,
            pipeline=pipeline,
            checkpoints=checkpoints,
            **chosen_options,
        )
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        raise DemoInputError(f"{method}: {error}") from None
    completed = np.asarray(result.depth, np.float32).copy()
    completed[region.empty] = np.nan  # depth-less pixels the visitor chose not to fill
    seconds = float(result.info.get("seconds", time.perf_counter() - start))

    # 2. pictures: one colour range for before / after
    report(0.7, desc="drawing the results")
    vmin, vmax = visualize.depth_range(upload.depth, completed, masks=[region.known, None])
    before = visualize.colorize(
        upload.depth, vmin=vmin, vmax=vmax, invalid_mask=~region.known, invalid_color=FILL_COLOR
    )
    before[region.empty] = (0, 0, 0)
    after = visualize.colorize(completed, vmin=vmin, vmax=vmax)
    color = after.copy()
    color[_thick(outline(region.fill))] = (255, 255, 255)
    color = visualize.add_colorbar(color, vmin, vmax, label="depth")
    uncertainty = None
    if result.uncertainty is not None:
        spread = np.asarray(result.uncertainty, np.float32)
        top = float(np.nanpercentile(spread, 99)) if np.isfinite(spread).any() else 1.0
        top = max(top, 1e-6)
        uncertainty = visualize.add_colorbar(
            visualize.colorize(spread, vmin=0.0, vmax=top, cmap="magma", invalid_mask=~np.isfinite(spread)),
            0.0,
            top,
            cmap="magma",
            label="std",
        )

    # 3. files
    report(0.8, desc="writing the files")
    notes: list[str] = []
    stem = upload.stem
    files = [io.write_depth_npy(folder / f"{stem}_depth.npy", completed, overwrite=True)]
    scale = out_scale or upload.depth_scale or 1000.0
    try:
        files.append(io.write_depth_png16(folder / f"{stem}_depth.png", completed, scale, overwrite=True))
    except ValueError as error:
        notes.append(f"16-bit PNG not written: {error}")
    known_png = folder / f"{stem}_known_mask.png"
    io.write_image(known_png, np.repeat(region.known[..., None] * np.uint8(255), 3, axis=2), overwrite=True)
    files.append(known_png)
    model3d = None
    if geometry_files:
        report(0.85, desc="building the 3D view")
        try:
            ply, model3d = _write_geometry(folder, stem, upload.rgb, completed, camera, view)
            files.append(ply)
            notes.append(f"3D view and PLY with {camera_text}")
        except ImportError as error:  # plyfile / trimesh missing: the depth outputs still count
            notes.append(f"3D outputs not written: {error}")
    report(1.0, desc="done")
    return RunResult(
        depth=completed,
        method=result.method,
        reason=str(result.info.get("method_reason", "")),
        seconds=seconds,
        color=color,
        before=before,
        after=after,
        uncertainty=uncertainty,
        files=[Path(f) for f in files],
        model3d=model3d,
        notes=notes,
    )
