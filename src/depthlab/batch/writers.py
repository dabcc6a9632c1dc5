"""Output formats of a batch item: a table ``format -> writer`` (add a format by adding a row).

A writer gets the path to write (a temporary file next to the final one; the batch renames all
of an item's files only when every writer succeeded) and the item's :class:`ItemResult`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from depthlab import io
from depthlab.batch.options import BatchOptions

__all__ = ["FORMATS", "ItemResult", "OutputFormat", "format_settings", "write_outputs"]


@dataclass
class ItemResult:
    """What one item produced, handed to the writers.

    Attributes:
        rgb: ``uint8 [H, W, 3]`` input image.
        depth: ``[H, W]`` float32 input depth (values at unknown pixels are meaningless).
        known_mask: ``[H, W]`` bool, True = known.
        completed: ``[H, W]`` float32 completed depth, input units.
        method: the method that ran.
        info: what the method reported (``seconds``, ...).
    """

    rgb: np.ndarray
    depth: np.ndarray
    known_mask: np.ndarray
    completed: np.ndarray
    method: str
    info: dict[str, Any] = field(default_factory=dict)


Writer = Callable[[Path, ItemResult, BatchOptions], None]
# PNG results carry this marker (io.is_depthlab_output): a folder batch never takes them as inputs,
# even where no results manifest lists them (.npy has no room for one: the manifest covers it)
_MARKER = "depthlab complete"


def _npy(path: Path, result: ItemResult, options: BatchOptions) -> None:
    io.write_depth_npy(path, result.completed, overwrite=True)


def _png16(path: Path, result: ItemResult, options: BatchOptions) -> None:
    scale = options.out_scale or options.depth_scale
    if scale is None:
        raise ValueError("--format png16 needs --out-scale (stored value = depth x scale), e.g. 1000")
    io.write_depth_png16(path, result.completed, scale, overwrite=True, marker=_MARKER)


def _color(path: Path, result: ItemResult, options: BatchOptions) -> None:
    io.write_color(
        path,
        result.completed,
        vmin=options.vmin,
        vmax=options.vmax,
        cmap=options.cmap,
        colorbar=options.colorbar,
        unit=options.unit,
        overwrite=True,
        marker=_MARKER,
    )


def _panel(path: Path, result: ItemResult, options: BatchOptions) -> None:
    io.write_panel(
        path,
        result.rgb,
        np.where(result.known_mask, result.depth, 0.0),
        result.known_mask,
        result.completed,
        vmin=options.vmin,
        vmax=options.vmax,
        cmap=options.cmap,
        unit=options.unit,
        caption=io.panel_caption(result.method, result.known_mask, result.info.get("seconds")),
        overwrite=True,
        marker=_MARKER,
    )


def _ply(path: Path, result: ItemResult, options: BatchOptions) -> None:
    """Coloured points of the completed depth (binary PLY with 3DGS's fields), in the camera frame."""
    from depthlab.geometry import load_camera, unproject, write_ply

    if options.intrinsics is None:
        raise ValueError("--format ply needs --intrinsics (fx,fy,cx,cy or a K file)")
    if options.ply_region not in ("unknown", "all"):
        raise ValueError(f"--ply-region must be 'unknown' or 'all'; got {options.ply_region!r}")
    height, width = result.completed.shape
    camera = load_camera(options.intrinsics, width, height)
    region = ~result.known_mask if options.ply_region == "unknown" else None
    cloud = unproject(result.completed, camera, mask=region, rgb=result.rgb, normals=True)
    write_ply(path, cloud, overwrite=True)


@dataclass(frozen=True)
class OutputFormat:
    """One output format: the suffix appended to the item's output prefix and its writer."""

    suffix: str
    write: Writer
    description: str
    options: tuple[str, ...] = ()  # the BatchOptions fields the writer reads (recorded per format)


# the table of output formats (add a format by adding a row)
FORMATS: dict[str, OutputFormat] = {
    "npy": OutputFormat("_depth.npy", _npy, "float32 depth, input units"),
    "png16": OutputFormat(
        "_depth.png", _png16, "16-bit PNG of depth * --out-scale", ("out_scale", "depth_scale")
    ),
    "color": OutputFormat(
        "_color.png", _color, "colourised depth", ("cmap", "vmin", "vmax", "colorbar", "unit")
    ),
    "panel": OutputFormat(
        "_panel.png", _panel, "RGB | input depth | completed", ("cmap", "vmin", "vmax", "unit")
    ),
    "ply": OutputFormat(
        "_points.ply",
        _ply,
        "coloured 3D points (x,y,z, normals, RGB; 3DGS initial points) of --ply-region, needs --intrinsics",
        ("intrinsics", "ply_region"),
    ),
}


def format_settings(fmt: str, options: BatchOptions) -> dict[str, Any]:
    """The settings format ``fmt`` is written with (JSON values; recorded per format)."""
    values = {name: getattr(options, name) for name in FORMATS[fmt].options}
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` left by a process that was killed while writing it."""
    for pattern in (f".{path.name}.*.tmp*", f"..{path.name}.*"):
        for stale in path.parent.glob(pattern):
            stale.unlink(missing_ok=True)


def write_outputs(result: ItemResult, paths: dict[str, Path], options: BatchOptions) -> list[Path]:
    """Write every ``{format: path}`` all or nothing: temporaries first, renamed when all succeeded.

    Returns the paths written. Existing files are replaced (the caller decided they may be).
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for fmt, path in paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(path)
            tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
            staged.append((tmp, path))
            FORMATS[fmt].write(tmp, result, options)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    return [path for _, path in staged]
