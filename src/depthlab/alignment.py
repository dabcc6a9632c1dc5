"""Align a relative prediction to known depth: least-squares scale (+ shift), plain or robust.

Pure functions on numpy arrays (torch accepted, converted). The fit is computed on a given pixel
set, e.g. only the known pixels, as a user of a monocular model would have to.

* :func:`fit_scale_shift` -- ``argmin_{s,t} sum_i (s x_i + t - y_i)^2`` (closed form).
* :func:`fit_scale` -- ``argmin_s sum_i (s x_i - y_i)^2 = <x, y> / <x, x>``.
* :func:`fit_scale_shift_robust` -- RANSAC over 2-point (or 1-point for scale-only) minimal
  samples, inliers ``|s x + t - y| <= rel_threshold * |y|``, then least squares on the inliers of
  the best model.
* :func:`align_depth` -- fit in depth or disparity space and return depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from depthlab.inputs import to_numpy

__all__ = [
    "AlignmentResult",
    "fit_scale_shift",
    "fit_scale",
    "fit_scale_shift_robust",
    "align_depth",
    "ALIGN_METHODS",
    "SPACES",
]

ALIGN_METHODS = ("lstsq", "scale", "robust", "robust_scale")
SPACES = ("depth", "disparity")


@dataclass
class AlignmentResult:
    """Result of :func:`align_depth`.

    Attributes:
        depth: aligned depth ``[H, W]`` float32, in the unit of the target depth.
        scale: fitted scale ``s`` (in the fit space).
        shift: fitted shift ``t`` (0 for scale-only fits).
        space: ``"depth"`` or ``"disparity"``: where ``s * x + t`` was fitted.
        n_fit: number of pixels used for the fit (inliers for robust fits).
    """

    depth: np.ndarray
    scale: float
    shift: float
    space: str
    n_fit: int


def _fit_values(x: Any, y: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    x_array = to_numpy(x).astype(np.float64)
    y_array = to_numpy(y).astype(np.float64)
    if x_array.shape != y_array.shape:
        raise ValueError(f"`x` has shape {x_array.shape} but `y` has shape {y_array.shape}")
    selected = np.isfinite(x_array) & np.isfinite(y_array)
    if mask is not None:
        mask_array = to_numpy(mask).astype(bool)
        if mask_array.shape != x_array.shape:
            raise ValueError(f"`mask` has shape {mask_array.shape} but `x` has shape {x_array.shape}")
        selected &= mask_array
    return x_array[selected], y_array[selected]


def _lstsq(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    x_mean, y_mean = x.mean(), y.mean()
    x_centred = x - x_mean
    variance = float(np.dot(x_centred, x_centred))
    if variance <= 1e-12 * max(1.0, float(np.dot(x, x))):
        # degenerate: constant prediction -> pure shift
        return 0.0, float(y_mean)
    scale = float(np.dot(x_centred, y - y_mean) / variance)
    return scale, float(y_mean - scale * x_mean)


def fit_scale_shift(x: Any, y: Any, mask: Any = None) -> tuple[float, float]:
    """Least-squares ``(s, t)`` minimising ``sum (s x + t - y)^2`` over ``mask`` (finite values).

    Raises:
        ValueError: fewer than 2 pixels to fit on.
    """
    xv, yv = _fit_values(x, y, mask)
    if xv.size < 2:
        raise ValueError(f"scale+shift fit needs at least 2 pixels; got {xv.size}")
    return _lstsq(xv, yv)


def fit_scale(x: Any, y: Any, mask: Any = None) -> float:
    """Least-squares scale ``s = <x, y> / <x, x>`` over ``mask`` (and finite values)."""
    xv, yv = _fit_values(x, y, mask)
    denominator = float(np.dot(xv, xv))
    if xv.size < 1 or denominator <= 0:
        raise ValueError(f"scale fit needs at least 1 pixel with x != 0; got {xv.size} pixels")
    return float(np.dot(xv, yv) / denominator)


def fit_scale_shift_robust(
    x: Any,
    y: Any,
    mask: Any = None,
    *,
    with_shift: bool = True,
    rel_threshold: float = 0.05,
    iterations: int = 200,
    seed: int | np.random.Generator = 0,
) -> tuple[float, float, np.ndarray]:
    """RANSAC scale(+shift) fit, refined by least squares on the inliers.

    1. ``iterations`` times: draw 2 distinct pixels (1 for scale-only) with the seeded generator,
       solve exactly, count inliers ``|s x + t - y| <= rel_threshold * |y|``.
    2. Keep the model with most inliers (first one on ties), refit by least squares on its inliers.

    Returns:
        ``(s, t, inliers)``, ``inliers`` a bool array over the fitted (masked, finite) pixels.
    """
    xv, yv = _fit_values(x, y, mask)
    minimal = 2 if with_shift else 1
    if xv.size < minimal:
        raise ValueError(f"robust fit needs at least {minimal} pixels; got {xv.size}")
    if rel_threshold <= 0:
        raise ValueError(f"`rel_threshold` must be > 0; got {rel_threshold!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    tolerance = rel_threshold * np.abs(yv)
    best_count, best_inliers = -1, np.ones(xv.size, dtype=bool)
    for _ in range(int(iterations)):
        picks = rng.choice(xv.size, size=minimal, replace=False)
        if with_shift:
            (x0, x1), (y0, y1) = xv[picks], yv[picks]
            if x0 == x1:
                continue
            scale = (y1 - y0) / (x1 - x0)
            shift = y0 - scale * x0
        else:
            if xv[picks[0]] == 0:
                continue
            scale, shift = yv[picks[0]] / xv[picks[0]], 0.0
        inliers = np.abs(scale * xv + shift - yv) <= tolerance
        count = int(inliers.sum())
        if count > best_count:
            best_count, best_inliers = count, inliers
    if best_inliers.sum() < minimal:
        best_inliers = np.ones(xv.size, dtype=bool)
    x_in, y_in = xv[best_inliers], yv[best_inliers]
    if with_shift:
        scale, shift = _lstsq(x_in, y_in)
    else:
        scale, shift = float(np.dot(x_in, y_in) / max(float(np.dot(x_in, x_in)), 1e-300)), 0.0
    return float(scale), float(shift), best_inliers


def align_depth(
    prediction: Any,
    target_depth: Any,
    mask: Any,
    *,
    prediction_kind: str = "depth",
    space: str | None = None,
    method: str = "lstsq",
    max_depth: float | None = None,
    seed: int = 0,
) -> AlignmentResult:
    """Align a relative prediction to known metric depth on the pixels ``mask``.

    Args:
        prediction: ``[H, W]`` relative prediction: affine-invariant depth
            (``prediction_kind="depth"``, e.g. Marigold) or relative disparity
            (``"disparity"``, e.g. Depth Anything, DPT/MiDaS).
        target_depth: ``[H, W]`` depth with the known values (any unit); only ``mask`` is read.
        mask: ``[H, W]`` bool, pixels used for the fit (known and > 0).
        prediction_kind: ``"depth"`` or ``"disparity"``.
        space: fit space, ``"depth"`` (``s * pred + t ~ depth``) or ``"disparity"``
            (``s * pred + t ~ 1 / depth``); default = ``prediction_kind``. A depth prediction fitted
            in disparity space is inverted first (and vice versa).
        method: ``"lstsq"`` (scale + shift), ``"scale"``, ``"robust"`` (RANSAC scale + shift),
            ``"robust_scale"``.
        max_depth: disparity fits: the aligned disparity is clamped to at least ``1 / max_depth``
            (default: ``1 / (10 * max known depth)``) so the depth stays positive and finite.
        seed: RANSAC seed.

    Returns:
        :class:`AlignmentResult` with depth ``[H, W]`` float32 in the target's unit.
    """
    if prediction_kind not in SPACES:
        raise ValueError(f"`prediction_kind` must be one of {SPACES}; got {prediction_kind!r}")
    space = prediction_kind if space is None else space
    if space not in SPACES:
        raise ValueError(f"`space` must be one of {SPACES}; got {space!r}")
    if method not in ALIGN_METHODS:
        raise ValueError(f"`method` must be one of {ALIGN_METHODS}; got {method!r}")
    pred = to_numpy(prediction).astype(np.float64)
    target = to_numpy(target_depth).astype(np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"`prediction` has shape {pred.shape} but `target_depth` has {target.shape}")
    fit_mask = to_numpy(mask).astype(bool) & np.isfinite(target) & (target > 0)
    if not fit_mask.any():
        raise ValueError("`mask` selects no pixel with positive, finite target depth")

    # 1. put the prediction and the target in the fit space
    if space == prediction_kind:
        x = pred
    else:
        with np.errstate(divide="ignore"):
            x = np.where(pred > 0, 1.0 / np.maximum(pred, 1e-12), np.nan)
    y = target if space == "depth" else np.where(target > 0, 1.0 / np.maximum(target, 1e-300), 0)

    # 2. fit
    n_fit = int((fit_mask & np.isfinite(x)).sum())
    if method == "lstsq":
        scale, shift = fit_scale_shift(x, y, fit_mask)
    elif method == "scale":
        scale, shift = fit_scale(x, y, fit_mask), 0.0
    else:
        scale, shift, inliers = fit_scale_shift_robust(
            x, y, fit_mask, with_shift=(method == "robust"), seed=seed
        )
        n_fit = int(inliers.sum())

    # 3. back to depth
    aligned = scale * x + shift
    if space == "disparity":
        if max_depth is None:
            max_depth = 10.0 * float(target[fit_mask].max())
        aligned = 1.0 / np.maximum(np.nan_to_num(aligned, nan=0.0), 1.0 / max_depth)
    else:
        aligned = np.nan_to_num(aligned, nan=0.0)
    return AlignmentResult(
        depth=aligned.astype(np.float32), scale=scale, shift=shift, space=space, n_fit=n_fit
    )
