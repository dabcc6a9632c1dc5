"""Depth metrics: pure functions ``(pred, gt, valid_mask) -> float``, computed per image.

Definitions follow Marigold's ``src/util/metric.py`` and the KITTI depth devkit, over the pixels
``P = valid_mask & isfinite(gt) & (gt > 0)`` (``n = |P|``; ``d`` = prediction, ``g`` = ground
truth, both in the same unit):

===========  ===================================================  ==========
key          definition                                           unit
===========  ===================================================  ==========
abs_rel      mean(|d - g| / g)                                    -
sq_rel       mean((d - g)^2 / g)                                  unit
rmse         sqrt(mean((d - g)^2))                                unit
rmse_log     sqrt(mean((ln d - ln g)^2))                          -
log10        mean(|log10 d - log10 g|)                            -
mae          mean(|d - g|)                                        unit
i_rmse       sqrt(mean((1/d - 1/g)^2))                            1/unit
i_mae        mean(|1/d - 1/g|)                                    1/unit
delta1/2/3   mean(max(d/g, g/d) < 1.25^k), k = 1, 2, 3            fraction
rmse_mm      1000 * rmse (KITTI depth-completion unit; d, g in m)  mm
mae_mm       1000 * mae                                           mm
i_rmse_km    1000 * i_rmse (1/m -> 1/km; d, g in m)               1/km
i_mae_km     1000 * i_mae                                         1/km
===========  ===================================================  ==========

The log, inverse and ratio metrics need ``d > 0``: the prediction is clamped to at least
``min_pred`` (default 1e-6 in the input unit) for those metrics only (Marigold and the KITTI
devkit clip predictions to the dataset's depth range before scoring; the runner does that, see
:func:`clip_prediction`). Non-finite predictions at scored pixels raise ``ValueError``.
Averaging over images (per image, then the mean) is done by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from depthlab.inputs import to_numpy

METRIC_NAMES = (
    "abs_rel",
    "sq_rel",
    "rmse",
    "rmse_log",
    "log10",
    "mae",
    "i_rmse",
    "i_mae",
    "delta1",
    "delta2",
    "delta3",
    "rmse_mm",
    "mae_mm",
    "i_rmse_km",
    "i_mae_km",
)
__all__ = [
    "METRIC_NAMES",
    "METRICS",
    "KERNELS",
    "HIGHER_IS_BETTER",
    "REGIONS",
    *METRIC_NAMES,
    "compute_metrics",
    "region_mask",
    "clip_prediction",
    "scored_pixels",
]
HIGHER_IS_BETTER = frozenset({"delta1", "delta2", "delta3"})
REGIONS = ("unknown", "known", "all")
DEFAULT_MIN_PRED = 1e-6


def _as_float_array(value: Any, name: str) -> np.ndarray:
    array = to_numpy(value)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = array[0] if array.shape[0] == 1 else array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be [H, W]; got shape {array.shape}")
    return array.astype(np.float64)


def scored_pixels(pred: Any, gt: Any, valid_mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Return the 1-D ``(pred, gt)`` float64 values at the scored pixels.

    Scored pixels: ``valid_mask`` (all pixels if None) and ``gt`` finite and > 0.

    Raises:
        ValueError: shape mismatch, no scored pixel, non-finite prediction at a scored pixel.
    """
    pred_array = _as_float_array(pred, "pred")
    gt_array = _as_float_array(gt, "gt")
    if pred_array.shape != gt_array.shape:
        raise ValueError(f"`pred` has shape {pred_array.shape} but `gt` has shape {gt_array.shape}")
    selected = np.isfinite(gt_array) & (gt_array > 0)
    if valid_mask is not None:
        mask = to_numpy(valid_mask)
        if mask.ndim == 3 and 1 in (mask.shape[0], mask.shape[-1]):
            mask = mask[0] if mask.shape[0] == 1 else mask[..., 0]
        if mask.shape != gt_array.shape:
            raise ValueError(f"`valid_mask` has shape {mask.shape} but `gt` has shape {gt_array.shape}")
        selected &= mask.astype(bool)
    if not selected.any():
        raise ValueError("no valid pixel to score: `valid_mask` & (gt > 0) & isfinite(gt) is empty")
    pred_values = pred_array[selected]
    if not np.all(np.isfinite(pred_values)):
        bad = int((~np.isfinite(pred_values)).sum())
        raise ValueError(f"`pred` has {bad} non-finite values at scored pixels")
    return pred_values, gt_array[selected]


class _Scored:
    """The scored values of one image, with the shared intermediates computed once.

    ``d``/``g``: 1-D float64 prediction and ground truth at the scored pixels; ``dp``: ``d``
    clamped to at least ``min_pred`` (log, inverse and ratio metrics); ``error``: ``d - g``.
    """

    def __init__(self, d: np.ndarray, g: np.ndarray, min_pred: float) -> None:
        self.d, self.g, self.min_pred = d, g, min_pred

    @cached_property
    def dp(self) -> np.ndarray:
        return np.maximum(self.d, self.min_pred)

    @cached_property
    def error(self) -> np.ndarray:
        return self.d - self.g


def _delta_kernel(power: int) -> Callable[[_Scored], float]:
    def kernel(v: _Scored) -> float:
        return np.mean(np.maximum(v.dp / v.g, v.g / v.dp) < 1.25**power)

    return kernel


# The one implementation of every metric: ``kernel(scored values) -> value``.
KERNELS: dict[str, Callable[[_Scored], float]] = {
    "abs_rel": lambda v: np.mean(np.abs(v.error) / v.g),
    "sq_rel": lambda v: np.mean(v.error**2 / v.g),
    "rmse": lambda v: np.sqrt(np.mean(v.error**2)),
    "rmse_log": lambda v: np.sqrt(np.mean((np.log(v.dp) - np.log(v.g)) ** 2)),
    "log10": lambda v: np.mean(np.abs(np.log10(v.dp) - np.log10(v.g))),
    "mae": lambda v: np.mean(np.abs(v.error)),
    "i_rmse": lambda v: np.sqrt(np.mean((1.0 / v.dp - 1.0 / v.g) ** 2)),
    "i_mae": lambda v: np.mean(np.abs(1.0 / v.dp - 1.0 / v.g)),
    "delta1": _delta_kernel(1),
    "delta2": _delta_kernel(2),
    "delta3": _delta_kernel(3),
    # the KITTI depth-completion benchmark's units, for depth in metres
    "rmse_mm": lambda v: 1000.0 * np.sqrt(np.mean(v.error**2)),
    "mae_mm": lambda v: 1000.0 * np.mean(np.abs(v.error)),
    "i_rmse_km": lambda v: 1000.0 * np.sqrt(np.mean((1.0 / v.dp - 1.0 / v.g) ** 2)),
    "i_mae_km": lambda v: 1000.0 * np.mean(np.abs(1.0 / v.dp - 1.0 / v.g)),
}
assert tuple(KERNELS) == METRIC_NAMES


def _metric(name: str, pred: Any, gt: Any, valid_mask: Any, min_pred: float = DEFAULT_MIN_PRED) -> float:
    d, g = scored_pixels(pred, gt, valid_mask)
    return float(KERNELS[name](_Scored(d, g, min_pred)))


def abs_rel(pred: Any, gt: Any, valid_mask: Any = None) -> float:
    """Mean absolute relative error ``mean(|d - g| / g)``."""
    return _metric("abs_rel", pred, gt, valid_mask)


def sq_rel(pred: Any, gt: Any, valid_mask: Any = None) -> float:
    """Mean squared relative error ``mean((d - g)^2 / g)`` (depth unit)."""
    return _metric("sq_rel", pred, gt, valid_mask)


def rmse(pred: Any, gt: Any, valid_mask: Any = None) -> float:
    """Root mean squared error (depth unit)."""
    return _metric("rmse", pred, gt, valid_mask)


def rmse_log(pred: Any, gt: Any, valid_mask: Any = None, min_pred: float = DEFAULT_MIN_PRED) -> float:
    """RMSE of natural logs ``sqrt(mean((ln d - ln g)^2))``."""
    return _metric("rmse_log", pred, gt, valid_mask, min_pred)


def log10(pred: Any, gt: Any, valid_mask: Any = None, min_pred: float = DEFAULT_MIN_PRED) -> float:
    """Mean absolute log10 error ``mean(|log10 d - log10 g|)``."""
    return _metric("log10", pred, gt, valid_mask, min_pred)


def mae(pred: Any, gt: Any, valid_mask: Any = None) -> float:
    """Mean absolute error (depth unit)."""
    return _metric("mae", pred, gt, valid_mask)


def i_rmse(pred: Any, gt: Any, valid_mask: Any = None, min_pred: float = DEFAULT_MIN_PRED) -> float:
    """RMSE of inverse depth ``sqrt(mean((1/d - 1/g)^2))`` (1/unit; KITTI reports 1/km)."""
    return _metric("i_rmse", pred, gt, valid_mask, min_pred)


def i_mae(pred: Any, gt: Any, valid_mask: Any = None, min_pred: float = DEFAULT_MIN_PRED) -> float:
    """MAE of inverse depth ``mean(|1/d - 1/g|)`` (1/unit)."""
    return _metric("i_mae", pred, gt, valid_mask, min_pred)


def delta1(pred: Any, gt: Any, valid_mask: Any = None, min_pred: float = DEFAULT_MIN_PRED) -> float:
    """Fraction of pixels with ``max(d/g, g/d) < 1.25``."""
    return _metric("delta1", pred, gt, valid_mask, min_pred)


def delta2(pred: Any, gt: Any, valid_mask: Any = None, min_pred: float = DEFAULT_MIN_PRED) -> float:
    """Fraction of pixels with ``max(d/g, g/d) < 1.25^2``."""
    return _metric("delta2", pred, gt, valid_mask, min_pred)


def delta3(pred: Any, gt: Any, valid_mask: Any = None, min_pred: float = DEFAULT_MIN_PRED) -> float:
    """Fraction of pixels with ``max(d/g, g/d) < 1.25^3``."""
    return _metric("delta3", pred, gt, valid_mask, min_pred)


def rmse_mm(pred: Any, gt: Any, valid_mask: Any = None) -> float:
    """RMSE in millimetres for depth in metres (KITTI depth-completion benchmark unit)."""
    return _metric("rmse_mm", pred, gt, valid_mask)


def mae_mm(pred: Any, gt: Any, valid_mask: Any = None) -> float:
    """MAE in millimetres for depth in metres."""
    return _metric("mae_mm", pred, gt, valid_mask)


def i_rmse_km(pred: Any, gt: Any, valid_mask: Any = None, min_pred: float = DEFAULT_MIN_PRED) -> float:
    """Inverse-depth RMSE in 1/km for depth in metres (``1000 * i_rmse``)."""
    return _metric("i_rmse_km", pred, gt, valid_mask, min_pred)


def i_mae_km(pred: Any, gt: Any, valid_mask: Any = None, min_pred: float = DEFAULT_MIN_PRED) -> float:
    """Inverse-depth MAE in 1/km for depth in metres (``1000 * i_mae``)."""
    return _metric("i_mae_km", pred, gt, valid_mask, min_pred)


# the public functions by name (each a thin wrapper over its kernel)
METRICS: dict[str, Callable[..., float]] = {name: globals()[name] for name in METRIC_NAMES}


def compute_metrics(
    pred: Any,
    gt: Any,
    valid_mask: Any = None,
    metrics: Sequence[str] | None = None,
    min_pred: float = DEFAULT_MIN_PRED,
) -> dict[str, float]:
    """All (or the named) metrics of one image, as Python floats.

    Args:
        pred: predicted depth ``[H, W]`` (numpy or torch), same unit as ``gt``.
        gt: ground-truth depth ``[H, W]``; pixels with ``gt <= 0`` or non-finite are ignored.
        valid_mask: ``[H, W]`` bool, the pixels to score (see :func:`region_mask`); None = all.
        metrics: names from :data:`METRIC_NAMES`; None = all, in that order.
        min_pred: lower clamp of the prediction for log/inverse/delta metrics.

    Returns:
        ``{name: value}``; also ``n_pixels`` (int as float) = number of scored pixels.

    Raises:
        ValueError: unknown metric name, shape mismatch, no valid pixel, non-finite prediction.
    """
    names = METRIC_NAMES if metrics is None else tuple(metrics)
    unknown = [name for name in names if name not in KERNELS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; available: {list(METRIC_NAMES)}")
    d, g = scored_pixels(pred, gt, valid_mask)  # [n], [n]
    scored = _Scored(d, g, min_pred)  # intermediates shared by the kernels
    values = {name: float(KERNELS[name](scored)) for name in names}
    values["n_pixels"] = float(d.size)
    return values


def region_mask(valid: Any, known_mask: Any, region: str = "unknown") -> np.ndarray:
    """Pixels to score: ``unknown`` = valid & ~known (filled by the method), ``known``, or ``all``.

    Args:
        valid: ``[H, W]`` bool GT validity.
        known_mask: ``[H, W]`` bool, True where depth was given to the method.
        region: one of :data:`REGIONS`.
    """
    valid_array = to_numpy(valid).astype(bool)
    known_array = to_numpy(known_mask).astype(bool)
    if valid_array.shape != known_array.shape:
        raise ValueError(
            f"`valid` has shape {valid_array.shape} but `known_mask` has shape {known_array.shape}"
        )
    if region == "unknown":
        return valid_array & ~known_array
    if region == "known":
        return valid_array & known_array
    if region == "all":
        return valid_array.copy()
    raise ValueError(f"`region` must be one of {REGIONS}; got {region!r}")


def clip_prediction(pred: Any, min_depth: float | None, max_depth: float | None) -> np.ndarray:
    """Clip a prediction to the evaluation range (as Marigold/KITTI eval do); NaN -> max_depth."""
    array = _as_float_array(pred, "pred")
    if min_depth is not None and max_depth is not None and min_depth >= max_depth:
        raise ValueError(f"`min_depth` ({min_depth}) must be < `max_depth` ({max_depth})")
    if max_depth is not None:
        array = np.where(np.isnan(array), max_depth, array)
    if min_depth is None and max_depth is None:
        return array
    return np.clip(array, min_depth, max_depth)
