"""Pre-processing of the DepthLab pipeline: pure numpy functions, no torch.

Every function here reproduces one step of the original DepthLab release exactly (see
``spec/inference.md``), and some offer a faster variant as an option. Masks are boolean
``known_mask`` arrays, True = depth known.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image
from scipy.interpolate import LinearNDInterpolator
from scipy.ndimage import distance_transform_edt
from scipy.spatial import cKDTree

__all__ = [
    "nearest_fill",
    "processing_size",
    "resize_rgb",
    "resize_depth",
    "resize_known_mask",
    "resize_sparse_depth",
    "normalize_depth",
    "linear_fill",
    "pad_to_multiple",
    "ResizedInputs",
    "resize_inputs",
    "PreparedInput",
    "prepare_input",
    "latent_size",
    "RESIZE_MODES",
    "FILL_MODES",
    "resolve_fill_mode",
]

ResizeMode = Literal["auto", "nearest", "preserve"]


def nearest_fill(depth: np.ndarray, known_mask: np.ndarray, exact: bool = True) -> np.ndarray:
    """Fill every unknown pixel with the value of the nearest known pixel (Euclidean, pixel units).

    Args:
        depth: ``[H, W]`` float array; values at unknown pixels are ignored.
        known_mask: ``[H, W]`` bool, True = known. Must contain at least one known pixel.
        exact: True reproduces the original tie-breaking between equidistant known pixels
            (scipy KD-tree over the known pixels as (column, row) in row-major order, as scipy's
            ``griddata(method="nearest")``). False uses an exact Euclidean distance transform,
            which is faster on dense masks and may break ties differently.

    Returns:
        ``[H, W]`` array of ``depth``'s dtype; known pixels are unchanged.
    """
    out = depth.copy()
    unknown = ~known_mask
    if not unknown.any():
        return out
    if not exact:
        _, (rows, cols) = distance_transform_edt(unknown, return_indices=True)
        out[unknown] = depth[rows[unknown], cols[unknown]]
        return out
    known_rows, known_cols = np.nonzero(known_mask)
    tree = cKDTree(np.stack([known_cols, known_rows], axis=1))
    unknown_rows, unknown_cols = np.nonzero(unknown)
    _, index = tree.query(np.stack([unknown_cols, unknown_rows], axis=1))
    out[unknown_rows, unknown_cols] = depth[known_rows[index], known_cols[index]]
    return out


def processing_size(height: int, width: int, processing_resolution: int) -> tuple[int, int]:
    """Size ``(H', W')`` at which the model runs: longest side scaled to ``processing_resolution``.

    ``f = min(R / W, R / H)`` (it may upscale), ``(int(H f), int(W f))`` as the original;
    ``processing_resolution == 0`` keeps the input size.
    """
    if processing_resolution == 0:
        return height, width
    factor = min(processing_resolution / width, processing_resolution / height)
    new_height, new_width = int(height * factor), int(width * factor)
    if new_height < 1 or new_width < 1:
        raise ValueError(
            f"`processing_resolution`={processing_resolution} turns the {height}x{width} input into "
            f"an empty {new_height}x{new_width} image"
        )
    return new_height, new_width


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``uint8 [H, W, 3]`` to ``size = (H', W')`` with Pillow bicubic, as the original."""
    height, width = size
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BICUBIC))


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float ``[H, W]`` map to ``size = (H', W')`` with OpenCV bilinear, as the original."""
    height, width = size
    return cv2.resize(depth, (width, height), interpolation=cv2.INTER_LINEAR)


def resize_known_mask(known_mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a boolean mask to ``size = (H', W')`` with OpenCV nearest, as the original."""
    height, width = size
    resized = cv2.resize(known_mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return resized.astype(bool)


def resize_sparse_depth(
    depth: np.ndarray, known_mask: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Downscale sparse known depth without losing known points.

    Every output cell that contains at least one known input pixel becomes known; its value is
    the known input depth nearest to the cell centre (a real measurement, never an average across
    a depth edge). Cells without a known pixel are unknown (value 0).

    Returns:
        ``(depth [H', W'] float32, known_mask [H', W'] bool)``.
    """
    height, width = depth.shape
    new_height, new_width = size
    rows, cols = np.nonzero(known_mask)
    # Continuous coordinates of each known pixel centre in the output grid.
    out_y = (rows + 0.5) * (new_height / height)
    out_x = (cols + 0.5) * (new_width / width)
    cell_r = np.clip(out_y.astype(np.int64), 0, new_height - 1)
    cell_c = np.clip(out_x.astype(np.int64), 0, new_width - 1)
    distance = (out_y - (cell_r + 0.5)) ** 2 + (out_x - (cell_c + 0.5)) ** 2
    cell = cell_r * new_width + cell_c
    # For each cell keep the known pixel closest to its centre: sort by (cell, distance).
    order = np.lexsort((distance, cell))
    first = np.ones(order.size, dtype=bool)
    first[1:] = cell[order][1:] != cell[order][:-1]
    chosen = order[first]
    out_depth = np.zeros(new_height * new_width, dtype=np.float32)
    out_mask = np.zeros(new_height * new_width, dtype=bool)
    out_depth[cell[chosen]] = depth[rows[chosen], cols[chosen]]
    out_mask[cell[chosen]] = True
    return out_depth.reshape(size), out_mask.reshape(size)


def normalize_depth(
    depth: np.ndarray, known_mask: np.ndarray, normalize_scale: float = 1.0
) -> tuple[np.ndarray, np.float32, np.float32]:
    """Map depth to ``[-s, s]`` using the range of the known pixels (float32 arithmetic).

    ``d_norm = ((d - lo) / (hi - lo + 1e-6) - 0.5) * 2 s`` with ``lo, hi`` = min, max of ``depth``
    over ``known_mask``.

    Returns:
        ``(d_norm [H, W] float32, lo, hi)``.
    """
    depth = depth.astype(np.float32, copy=False)
    known_values = depth[known_mask]
    lo, hi = known_values.min(), known_values.max()
    normalized = ((depth - lo) / (hi - lo + np.float32(1e-6)) - np.float32(0.5)) * np.float32(
        2.0 * normalize_scale
    )
    return normalized.astype(np.float32), lo, hi


def linear_fill(
    values: np.ndarray, known_mask: np.ndarray, fill_value: float = 0.0, exact: bool = True
) -> np.ndarray:
    """Piecewise-linear interpolation of the known values over the unknown pixels.

    Args:
        values: ``[H, W]`` float array; only known pixels are read.
        known_mask: ``[H, W]`` bool, True = known.
        fill_value: value of unknown pixels outside the convex hull of the known ones.
        exact: True reproduces the original (Delaunay triangulation of all known pixels as
            (row, column) in row-major order, like scipy ``griddata(method="linear")``).
            False triangulates only the known pixels that border an unknown pixel (the others
            cannot be a vertex of a triangle that covers a hole pixel in a triangulation of the
            grid interior); much faster on dense masks. Results equal the exact path except where
            Qhull resolves co-circular grid points differently.

    Returns:
        ``[H, W]`` float32; known pixels keep their values.
    """
    out = values.astype(np.float32, copy=True)
    unknown = ~known_mask
    if not unknown.any():
        return out
    if exact:
        points_mask = known_mask
    else:
        # Known pixels within 1 px (8-neighbourhood) of an unknown pixel.
        near_hole = cv2.dilate(unknown.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        points_mask = known_mask & near_hole
        if points_mask.sum() < 3:
            points_mask = known_mask
    rows, cols = np.nonzero(points_mask)
    points = np.stack([rows, cols], axis=1).astype(np.float64)
    point_values = values[rows, cols].astype(np.float64)
    target_rows, target_cols = np.nonzero(unknown)
    if len(rows) < 3 or _collinear(points):
        out[unknown] = fill_value
        return out
    interpolator = LinearNDInterpolator(points, point_values, fill_value=fill_value)
    filled = interpolator(np.stack([target_rows, target_cols], axis=1).astype(np.float64))
    out[target_rows, target_cols] = filled.astype(np.float32)
    return out


def _collinear(points: np.ndarray) -> bool:
    """True when all points lie on one line (no 2-D triangulation exists)."""
    centred = points - points.mean(axis=0)
    return bool(np.linalg.matrix_rank(centred) < 2)


def pad_to_multiple(array: np.ndarray, multiple: int = 8) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad ``[H, W, ...]`` at the bottom/right by edge replication to multiples of ``multiple``.

    Returns:
        ``(padded array, (pad_bottom, pad_right))``.
    """
    height, width = array.shape[:2]
    pad_bottom = (-height) % multiple
    pad_right = (-width) % multiple
    if pad_bottom == 0 and pad_right == 0:
        return array, (0, 0)
    widths = [(0, pad_bottom), (0, pad_right)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, widths, mode="edge"), (pad_bottom, pad_right)


@dataclass
class ResizedInputs:
    """One item at processing resolution (all ``[H', W']``, padded to multiples of 8).

    Attributes:
        rgb: uint8 ``[H', W', 3]``.
        depth: float32 ``[H', W']``, pre-filled (every pixel has a value).
        known_mask: bool ``[H', W']``.
        size: ``(H', W')`` before padding; the output is cropped back to it.
        resize_mode: ``"nearest"`` (original) or ``"preserve"`` (sparse points kept).
    """

    rgb: np.ndarray
    depth: np.ndarray
    known_mask: np.ndarray
    size: tuple[int, int]
    resize_mode: str


def resize_inputs(
    rgb: np.ndarray,
    prefilled_depth: np.ndarray,
    known_mask: np.ndarray,
    processing_resolution: int,
    resize_mode: ResizeMode = "auto",
    sparse_loss_threshold: float = 0.1,
) -> ResizedInputs:
    """Resize one item to the processing resolution and pad it to multiples of 8.

    The original resizes the mask with nearest neighbour, which drops most points of a sparse
    input when downscaling. With ``resize_mode="auto"`` the original path is used unless it would
    lose more than ``sparse_loss_threshold`` of the known pixels (i.e. their output cell ends up
    unknown); then ``"preserve"`` is used: each output cell that contains a known input pixel is
    known, with the measurement nearest to the cell centre (:func:`resize_sparse_depth`), and the
    depth between them is the nearest fill at processing resolution.
    """
    height, width = known_mask.shape
    size = processing_size(height, width, processing_resolution)
    rgb_resized = resize_rgb(rgb, size)
    depth_resized = resize_depth(prefilled_depth, size)
    mask_resized = resize_known_mask(known_mask, size)
    mode = resize_mode
    if resize_mode == "auto":
        mode = "nearest"
        if size[0] < height or size[1] < width:
            lost = _fraction_of_known_lost(known_mask, mask_resized)
            if lost > sparse_loss_threshold:
                mode = "preserve"
    if mode == "preserve":
        sparse_depth, mask_resized = resize_sparse_depth(prefilled_depth, known_mask, size)
        depth_resized = nearest_fill(sparse_depth, mask_resized, exact=False)
    elif mode != "nearest":
        raise ValueError(f"`resize_mode` must be 'auto', 'nearest' or 'preserve'; got {resize_mode!r}")
    rgb_padded, _ = pad_to_multiple(rgb_resized)
    depth_padded, _ = pad_to_multiple(depth_resized)
    mask_padded, _ = pad_to_multiple(mask_resized)
    return ResizedInputs(rgb_padded, depth_padded, mask_padded, size, mode)


def _fraction_of_known_lost(known_mask: np.ndarray, resized_mask: np.ndarray) -> float:
    """Fraction of known input pixels whose cell in ``resized_mask`` is unknown."""
    height, width = known_mask.shape
    new_height, new_width = resized_mask.shape
    rows, cols = np.nonzero(known_mask)
    if rows.size == 0:
        return 0.0
    cell_r = np.clip(((rows + 0.5) * new_height / height).astype(np.int64), 0, new_height - 1)
    cell_c = np.clip(((cols + 0.5) * new_width / width).astype(np.int64), 0, new_width - 1)
    return float(np.mean(~resized_mask[cell_r, cell_c]))


FillMode = Literal["exact", "fast", "auto"]
RESIZE_MODES = ("auto", "nearest", "preserve")
FILL_MODES = ("exact", "fast", "auto")


def resolve_fill_mode(fill_mode: FillMode) -> Literal["exact", "fast"]:
    """The fills ``fill_mode`` stands for: ``"auto"`` is always ``"exact"``, on every device.

    ``"auto"`` would pick the fast fills (on CUDA, to take the exact fills off the critical path)
    only if they reproduced the golden cases within the conformance tolerance (5e-5 end to end).
    They do not: ``benchmarks/fill_mode_golden.py`` (``benchmarks/results/fill_mode_golden.md``)
    measures a max depth error of 2.1e-2, 1.4e-3 and 1.3e-1 on 3 of the 5 golden cases (the
    distance-transform pre-fill breaks ties between equidistant known pixels differently, and
    Qhull resolves co-circular grid points of the smaller triangulation differently; see
    :func:`nearest_fill` and :func:`linear_fill`), so ``"auto"`` keeps the original's exact fills. ``"fast"`` remains available when speed matters more.
    """
    if fill_mode not in FILL_MODES:
        raise ValueError(f"`fill_mode` must be one of {FILL_MODES}; got {fill_mode!r}")
    return "fast" if fill_mode == "fast" else "exact"


@dataclass
class PreparedInput:
    """One image pair after the pipeline's numpy pre-processing (``spec/inference.md`` steps 1-7).

    Attributes:
        rgb: uint8 ``[H, W, 3]``, input size (the CLIP image encoder sees this).
        depth: float32 ``[H, W]``, input depth in its units (values at unknown pixels unused).
        known_mask: bool ``[H, W]``, True = known.
        resized: the item at processing resolution, padded to multiples of 8 (``[H8, W8]``).
        normalized: float32 ``[H8, W8]``, pre-filled depth mapped to ``[-s, s]`` by the known range.
        masked_filled: float32 ``[H8, W8]``, normalised known depth, linear-filled (0 outside the
            known hull): the masked-depth input.
        lo, hi: known depth range (input units) used for the normalisation.
        seconds: time spent in the pre-fill and the linear fill.
    """

    rgb: np.ndarray
    depth: np.ndarray
    known_mask: np.ndarray
    resized: ResizedInputs
    normalized: np.ndarray
    masked_filled: np.ndarray
    lo: np.float32
    hi: np.float32
    seconds: dict[str, float]

    @property
    def latent_size(self) -> tuple[int, int]:
        """``(h, w) = (H8 / 8, W8 / 8)``, the latent size."""
        return self.normalized.shape[0] // 8, self.normalized.shape[1] // 8


def latent_size(height: int, width: int, processing_resolution: int) -> tuple[int, int]:
    """Latent size ``(h, w)`` of an ``height x width`` input: processing size padded to x8, / 8."""
    new_height, new_width = processing_size(height, width, processing_resolution)
    return -(-new_height // 8), -(-new_width // 8)


def prepare_input(
    rgb: np.ndarray,
    depth: np.ndarray,
    known_mask: np.ndarray,
    processing_resolution: int,
    normalize_scale: float = 1.0,
    refine: bool = False,
    resize_mode: ResizeMode = "auto",
    fill_mode: FillMode = "exact",
) -> PreparedInput:
    """The pipeline's pre-processing of one checked image pair (pure numpy).

    1. Pre-fill: unknown depth gets the nearest known value (skipped with ``refine``: ``depth``
       is then a full map).
    2. Resize RGB, depth and mask to the processing size and pad to multiples of 8
       (:func:`resize_inputs`).
    3. Normalise by the known range to ``[-s, s]`` (:func:`normalize_depth`).
    4. Masked depth: unknown pixels set to 0, then linearly filled (:func:`linear_fill`).

    Args:
        rgb: uint8 ``[H, W, 3]``.
        depth: float32 ``[H, W]``; only known pixels are read unless ``refine``.
        known_mask: bool ``[H, W]``, True = known (at least one known pixel).
        processing_resolution: longest side at which the model runs; 0 = input size.
        normalize_scale: ``s``.
        refine: ``depth`` is a full (rough) map: no pre-fill; it must be finite everywhere.
        resize_mode: see :func:`resize_inputs`.
        fill_mode: ``"exact"`` (original pre-fill and Delaunay linear fill), ``"fast"`` or
            ``"auto"`` (= ``"exact"``, see :func:`resolve_fill_mode`).

    Raises:
        ValueError: a bad option, non-finite depth with ``refine``, or no known pixel left at
            processing resolution.
    """
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"`resize_mode` must be one of {RESIZE_MODES}; got {resize_mode!r}")
    fill_mode = resolve_fill_mode(fill_mode)
    if refine and not np.all(np.isfinite(depth)):
        raise ValueError("`depth` must be finite everywhere with refine=True (it is a full map)")
    exact = fill_mode == "exact"
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if refine:
        prefilled = depth
    else:
        prefilled = nearest_fill(np.where(known_mask, depth, 0).astype(np.float32), known_mask, exact=exact)
    seconds["prefill"] = time.perf_counter() - start
    resized = resize_inputs(rgb, prefilled, known_mask, processing_resolution, resize_mode)
    if not resized.known_mask.any():
        raise ValueError(f"no known pixel is left at processing resolution {resized.size}")
    normalized, lo, hi = normalize_depth(resized.depth, resized.known_mask, normalize_scale)
    start = time.perf_counter()
    masked = np.where(resized.known_mask, normalized, 0).astype(np.float32)
    masked_filled = linear_fill(masked, resized.known_mask, 0.0, exact=exact)
    seconds["linear_fill"] = time.perf_counter() - start
    return PreparedInput(rgb, depth, known_mask, resized, normalized, masked_filled, lo, hi, seconds)
