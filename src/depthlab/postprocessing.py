"""Post-processing of the DepthLab pipeline: back to depth units and input size (numpy only)."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

__all__ = [
    "denormalize_depth",
    "resize_to_input",
    "paste_known",
    "harmonic_correction",
    "preserve_known_depth",
]

PreserveKnown = Literal["none", "exact", "smooth"]


def denormalize_depth(
    prediction: np.ndarray, lo: np.float32, hi: np.float32, normalize_scale: float = 1.0
) -> np.ndarray:
    """Decoded mean in ``[-s, s]`` -> depth units: ``(x + s) / (2 s) * (hi - lo) + lo`` (float32).

    As the original, no ``1e-6`` is added to ``hi - lo`` here although normalisation added it.
    """
    scale = np.float32(normalize_scale)
    raw = (prediction.astype(np.float32) + scale) / (np.float32(2.0) * scale)
    return (raw * (hi - lo) + lo).astype(np.float32)


def resize_to_input(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (OpenCV) resize of ``[H', W']`` depth to ``size = (H, W)`` in float64, clipped at 0."""
    height, width = size
    resized = cv2.resize(depth.astype(np.float64), (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(resized, 0.0, None)


def paste_known(prediction: np.ndarray, depth: np.ndarray, known_mask: np.ndarray) -> np.ndarray:
    """Copy the known depth into the prediction (``preserve_known="exact"``)."""
    out = prediction.copy()
    out[known_mask] = depth[known_mask]
    return out


def harmonic_correction(prediction: np.ndarray, depth: np.ndarray, known_mask: np.ndarray) -> np.ndarray:
    """Match the known depth exactly without a seam (``preserve_known="smooth"``).

    The residual ``r = depth - prediction`` on the known pixels is extended over the unknown
    pixels as the harmonic function (discrete Laplace equation, 4-neighbourhood, zero-flux at the
    image border) that equals ``r`` on the known pixels, and added to the prediction. Known pixels
    then equal the input exactly and the correction is continuous across the hole border.

    Args:
        prediction: ``[H, W]`` predicted depth.
        depth: ``[H, W]`` input depth (read on known pixels only).
        known_mask: ``[H, W]`` bool, True = known; at least one pixel known.

    Returns:
        ``[H, W]`` corrected depth (float64).
    """
    height, width = known_mask.shape
    residual = np.zeros((height, width), dtype=np.float64)
    residual[known_mask] = depth[known_mask].astype(np.float64) - prediction[known_mask]
    unknown = ~known_mask
    n_unknown = int(unknown.sum())
    out = prediction.astype(np.float64).copy()
    out[known_mask] = depth[known_mask]
    if n_unknown == 0:
        return out
    index = -np.ones((height, width), dtype=np.int64)
    index[unknown] = np.arange(n_unknown)
    rows, cols = np.nonzero(unknown)
    diagonal = np.zeros(n_unknown)
    rhs = np.zeros(n_unknown)
    off_rows, off_cols = [], []
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nr, nc = rows + dr, cols + dc
        inside = (nr >= 0) & (nr < height) & (nc >= 0) & (nc < width)
        diagonal += inside
        me = np.nonzero(inside)[0]
        neighbour_index = index[nr[inside], nc[inside]]
        is_unknown = neighbour_index >= 0
        off_rows.append(me[is_unknown])
        off_cols.append(neighbour_index[is_unknown])
        known_me = me[~is_unknown]
        rhs[known_me] += residual[nr[inside][~is_unknown], nc[inside][~is_unknown]]
    off_rows_all = np.concatenate(off_rows)
    off_cols_all = np.concatenate(off_cols)
    matrix = sp.csc_matrix(
        (
            np.concatenate([diagonal, -np.ones(off_rows_all.size)]),
            (
                np.concatenate([np.arange(n_unknown), off_rows_all]),
                np.concatenate([np.arange(n_unknown), off_cols_all]),
            ),
        ),
        shape=(n_unknown, n_unknown),
    )
    # Unknown regions that touch no known pixel have no anchor: tie them weakly to 0 correction.
    matrix = matrix + sp.identity(n_unknown, format="csc") * 1e-9
    correction = spsolve(matrix, rhs)
    out[rows, cols] += correction
    return out


def preserve_known_depth(
    prediction: np.ndarray, depth: np.ndarray, known_mask: np.ndarray, mode: PreserveKnown
) -> np.ndarray:
    """Apply ``preserve_known`` (``"none"``, ``"exact"`` or ``"smooth"``); result clipped at 0."""
    if mode == "none":
        return prediction
    if mode == "exact":
        return paste_known(prediction, depth, known_mask)
    if mode == "smooth":
        return np.clip(harmonic_correction(prediction, depth, known_mask), 0.0, None)
    raise ValueError(f"`preserve_known` must be 'none', 'exact' or 'smooth'; got {mode!r}")
