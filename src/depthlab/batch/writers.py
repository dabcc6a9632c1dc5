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


def _npy(path: Path, result: ItemResult, options: BatchOptions) -> None:
    io.write_depth_npy(path, result.completed, overwrite=True)


def _png16(path: Path, result: ItemResult, options: BatchOptions) -> None:
    scale = options.out_scale or options.depth_scale
    if scale is None:
        raise ValueError("--format png16 needs --out-scale (or --depth-scale), e.g. 1000")
    io.write_depth_png16(path, result.completed, scale, overwrite=True)


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
        overwrite=True,
    )


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
    "panel": OutputFormat("_panel.png", _panel, "RGB | input depth | completed", ("cmap", "vmin", "vmax")),
}


def format_settings(fmt: str, options: BatchOptions) -> dict[str, Any]:
    """The settings format ``fmt`` is written with (JSON values; recorded per format)."""
    values = {name: getattr(options, name) for name in FORMATS[fmt].options}
    return json.loads(json.dumps(values, sort_keys=True, default=str))


def write_outputs(result: ItemResult, paths: dict[str, Path], options: BatchOptions) -> list[Path]:
    """Write every ``{format: path}`` all or nothing: temporaries first, renamed when all succeeded.

    Returns the paths written. Existing files are replaced (the caller decided they may be).
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for fmt, path in paths.items():
            path.parent.mkdir(parents=True, exist_ok=True)
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
