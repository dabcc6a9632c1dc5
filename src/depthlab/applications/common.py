"""What the applications share: choosing/loading the method once, running it, writing outputs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depthlab import io
from depthlab.geometry import Camera, depth_to_mesh, unproject, write_glb, write_ply
from depthlab.outputs import DepthLabOutput

__all__ = [
    "MethodChoice",
    "choose_method",
    "run_completion",
    "OUTPUT_SUFFIXES",
    "output_paths",
    "write_all_or_nothing",
    "write_outputs",
]

# output format -> suffix appended to an item's output prefix
OUTPUT_SUFFIXES = {
    "npy": "_depth.npy",  # float32 completed depth, input units
    "png16": "_depth.png",  # 16-bit PNG of depth * out_scale
    "color": "_color.png",  # colourised completed depth
    "panel": "_panel.png",  # RGB | input depth | completed
    "ply": "_points.ply",  # coloured points of the completed depth (binary PLY, 3DGS fields)
    "glb": "_mesh.glb",  # coloured mesh of the completed depth (GLB, OpenGL frame)
}


# PNG results carry depthlab's output marker (io.is_depthlab_output): never taken as inputs later
_MARKER = "depthlab application"


@dataclass
class MethodChoice:
    """A method resolved once for a run: ``name``, ``reason`` and the loaded DepthLab ``pipeline``."""

    name: str
    reason: str
    pipeline: Any = None


def choose_method(
    method: str = "auto",
    *,
    pipeline: Any = None,
    checkpoints: str | os.PathLike | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> MethodChoice:
    """Resolve ``method`` (``auto``: DepthLab if its weights are found, else ``guided``) and load DepthLab once.

    Args:
        method: a registered method name (:func:`depthlab.completion.method_names`).
        pipeline: an already loaded :class:`depthlab.DepthLabPipeline` (used as is).
        checkpoints: where DepthLab's weights are (default: ``$DEPTHLAB_CHECKPOINTS``, hub cache).
        device: torch device for DepthLab (default: CUDA when available, else CPU).
        dtype: ``fp32``, ``fp16`` or ``bf16`` (default fp32).
    """
    from depthlab.completion import load_pipeline, resolve_method

    chosen, reason, paths = resolve_method(method, pipeline=pipeline, checkpoints=checkpoints)
    if chosen != "depthlab" or pipeline is not None:
        return MethodChoice(chosen, reason, pipeline)
    import torch

    table = {None: None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype not in table:
        raise ValueError(f"`dtype` (--dtype) must be fp32, fp16 or bf16; got {dtype!r}")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return MethodChoice(chosen, reason, load_pipeline(paths, device=device, torch_dtype=table[dtype]))


def run_completion(
    choice: MethodChoice,
    rgb: np.ndarray | None,
    depth: np.ndarray,
    known_mask: np.ndarray | None,
    *,
    seed: int | None = 0,
    depthlab_options: dict[str, Any] | None = None,
    show_progress_bar: bool = False,
) -> DepthLabOutput:
    """Run the chosen method on one input with :func:`depthlab.complete`.

    DepthLab gets ``depthlab_options`` (pipeline call arguments) and a CPU generator seeded
    with ``seed``; classical methods run with their defaults.
    """
    from depthlab.completion import complete

    if choice.name != "depthlab":
        return complete(rgb, depth, known_mask, method=choice.name)
    import torch

    options = dict(depthlab_options or {})
    options.setdefault("show_progress_bar", show_progress_bar)
    if seed is not None:
        options["generator"] = torch.Generator().manual_seed(int(seed))
    return complete(rgb, depth, known_mask, method="depthlab", pipeline=choice.pipeline, **options)


def check_formats(
    formats: Sequence[str], allowed: Sequence[str] = tuple(OUTPUT_SUFFIXES), name: str = "--format"
) -> list[str]:
    """The formats as a list, or a one-line ValueError naming the unknown ones."""
    formats = list(formats)
    bad = [f for f in formats if f not in allowed]
    if bad or not formats:
        raise ValueError(
            f"{name}: unknown format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(allowed)}"
        )
    return formats


def output_paths(prefix: str | os.PathLike, formats: Sequence[str]) -> dict[str, Path]:
    """``{format: path}`` for an output prefix (``out/sub/000000`` -> ``out/sub/000000_depth.npy``)."""
    return {f: Path(f"{prefix}{OUTPUT_SUFFIXES[f]}") for f in formats}


def write_all_or_nothing(
    writers: dict[Path, Callable[[Path], Any]], *, overwrite: bool = False
) -> list[Path]:
    """Call every ``writer(tmp)`` on a temporary next to its path, then rename them all: all files or none.

    Nothing is written when a path exists and ``overwrite`` is False (``FileExistsError`` naming
    it), and a writer that fails leaves no file behind (earlier ones are not renamed either), so a
    frame that fails halfway never looks finished to a later run.
    """
    if not overwrite:
        for path in writers:
            if path.exists():
                raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in writers.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
            staged.append((tmp, path))
            write(tmp)
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    return [path for _, path in staged]


def write_outputs(
    paths: dict[str, Path],
    *,
    rgb: np.ndarray | None,
    input_depth: np.ndarray,
    known_mask: np.ndarray,
    completed: np.ndarray,
    camera: Camera | None = None,
    out_scale: float | None = None,
    cmap: str = "Spectral",
    vmin: float | None = None,
    vmax: float | None = None,
    ply_region: str = "all",
    overwrite: bool = False,
    extra: dict[Path, Callable[[Path], Any]] | None = None,
) -> list[Path]:
    """Write the outputs named in ``paths``, all or none (:func:`write_all_or_nothing`).

    ``ply``/``glb`` need ``camera``; ``ply_region="unknown"`` writes only the points the
    completion added (pixels not in ``known_mask``), ``"all"`` every pixel. ``extra``: further
    ``{path: writer(tmp)}`` written in the same all-or-nothing step. Existing files are replaced
    only with ``overwrite``.
    """
    if ply_region not in ("unknown", "all"):
        raise ValueError(f"`ply_region` (--ply-region) must be 'unknown' or 'all'; got {ply_region!r}")
    writers: dict[Path, Callable[[Path], Any]] = {}
    region = None if ply_region == "all" else ~np.asarray(known_mask, bool)
    for fmt, path in paths.items():
        path = Path(path)
        if fmt == "npy":
            writers[path] = lambda tmp: io.write_depth_npy(tmp, completed, overwrite=True)
        elif fmt == "png16":
            if out_scale is None:
                raise ValueError("--format png16 needs --out-scale, e.g. 256 (KITTI) or 1000 (mm)")
            writers[path] = lambda tmp: io.write_depth_png16(
                tmp, completed, out_scale, overwrite=True, marker=_MARKER
            )
        elif fmt == "color":
            writers[path] = lambda tmp: io.write_color(
                tmp, completed, vmin=vmin, vmax=vmax, cmap=cmap, overwrite=True, marker=_MARKER
            )
        elif fmt == "panel":
            panel_rgb = rgb if rgb is not None else np.zeros((*completed.shape, 3), np.uint8)
            writers[path] = lambda tmp, panel_rgb=panel_rgb: io.write_panel(
                tmp,
                panel_rgb,
                np.where(known_mask, input_depth, 0.0),
                known_mask,
                completed,
                vmin=vmin,
                vmax=vmax,
                cmap=cmap,
                overwrite=True,
                marker=_MARKER,
            )
        elif fmt in ("ply", "glb"):
            if camera is None:
                raise ValueError(f"--format {fmt} needs the camera intrinsics (--intrinsics)")
            if fmt == "ply":
                writers[path] = lambda tmp: write_ply(
                    tmp, unproject(completed, camera, mask=region, rgb=rgb, normals=True), overwrite=True
                )
            else:
                writers[path] = lambda tmp: write_glb(
                    tmp, depth_to_mesh(completed, camera, rgb=rgb, mask=region), overwrite=True
                )
        else:
            raise ValueError(f"unknown output format {fmt!r}")
    writers.update(extra or {})
    return write_all_or_nothing(writers, overwrite=overwrite)
