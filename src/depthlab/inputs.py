"""Standardise and check user inputs: RGB images, depth maps and known-pixel masks.

Conventions used everywhere in depthlab:

* ``known_mask`` is boolean, **True where the depth is known** (given), False where it has to be
  filled. The original DepthLab code uses the opposite (1 = fill); convert at the boundary with
  :func:`known_mask_from_fill_mask`.
* Depth is a float32 ``[H, W]`` array in the user's units (metres, millimetres, ...); the output
  comes back in the same units.
* Images are converted to ``uint8 [H, W, 3]`` RGB.

This module needs numpy and Pillow only (no torch), so classical methods work without it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "is_torch_tensor",
    "to_numpy",
    "to_rgb_uint8",
    "to_depth_array",
    "resolve_known_mask",
    "known_mask_from_fill_mask",
    "check_completion_inputs",
]

logger = logging.getLogger(__name__)

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def is_torch_tensor(value: Any) -> bool:
    """True if ``value`` is a ``torch.Tensor`` (checked without importing torch)."""
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def to_numpy(value: Any) -> np.ndarray:
    """Convert a numpy array or torch tensor (any device) to a numpy array."""
    if is_torch_tensor(value):
        value = value.detach()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.cpu().numpy()
    return np.asarray(value)


def _describe(value: Any) -> str:
    if isinstance(value, Image.Image):
        return f"PIL image (mode {value.mode!r}, size {value.size})"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__}"


def to_rgb_uint8(image: Any, name: str = "image") -> np.ndarray:
    """Convert an image to ``uint8 [H, W, 3]`` RGB.

    Accepts a PIL image of any mode without alpha (``L``, ``P``, ``I;16``, ``CMYK``, ...), a numpy
    array ``[H, W]``/``[H, W, 1]``/``[H, W, 3]`` (uint8, uint16 or float in [0, 1]), or a torch
    tensor ``[C, H, W]`` (C = 1 or 3, uint8 or float in [0, 1]).

    Raises:
        ValueError: images with an alpha channel (drop or composite it first), wrong shapes, float
            values outside [0, 1], non-finite values.
        TypeError: anything that is not an image.
    """
    if isinstance(image, Image.Image):
        if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
            raise ValueError(
                f"`{name}` has an alpha channel ({_describe(image)}); composite it onto a "
                "background or drop it (e.g. `image.convert('RGB')`) before calling."
            )
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image).astype(np.float64)
            top = 65535.0 if array.max() > 255 else 255.0
            array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
            return np.repeat(array[..., None], 3, axis=2)
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()

    if is_torch_tensor(image):
        array = to_numpy(image)
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 3 or array.shape[0] not in (1, 3, 4):
            raise ValueError(
                f"`{name}` as a torch tensor must be [C, H, W] with C in (1, 3); got {_describe(image)}"
            )
        array = np.moveaxis(array, 0, -1)
    elif isinstance(image, np.ndarray):
        array = image
    else:
        raise TypeError(f"`{name}` must be a PIL image, numpy array or torch tensor; got {_describe(image)}")

    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"`{name}` must be [H, W], [H, W, 1] or [H, W, 3]; got {_describe(image)}")
    if array.shape[2] == 4:
        raise ValueError(f"`{name}` has an alpha channel ({_describe(image)}); drop or composite it first.")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"`{name}` is empty: {_describe(image)}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)

    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        return (array.astype(np.float64) / 65535.0 * 255.0 + 0.5).astype(np.uint8)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"`{name}` must be numeric; got {_describe(image)}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or infinite values")
    lo, hi = float(array.min()), float(array.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"`{name}` is a float image with values in [{lo:g}, {hi:g}]; expected [0, 1] "
            "(pass uint8 for 0..255 images)"
        )
    return np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_depth_array(depth: Any, name: str = "depth") -> np.ndarray:
    """Convert a depth map (numpy/torch, ``[H, W]``, ``[1, H, W]`` or ``[H, W, 1]``) to float32 ``[H, W]``."""
    if isinstance(depth, Image.Image):
        depth = np.asarray(depth)
    if not (isinstance(depth, np.ndarray) or is_torch_tensor(depth)):
        raise TypeError(f"`{name}` must be a numpy array or torch tensor; got {_describe(depth)}")
    array = to_numpy(depth)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[2]):
        array = array[0] if array.shape[0] == 1 else array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"`{name}` must have shape [H, W]; got {_describe(depth)}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"`{name}` must be numeric; got {_describe(depth)}")
    return array.astype(np.float32)


def known_mask_from_fill_mask(fill_mask: Any) -> np.ndarray:
    """Convert a mask in the original DepthLab convention (1/True = to fill) to ``known_mask``."""
    return ~resolve_known_mask(fill_mask, None, name="fill_mask")


def _binary_mask(known_mask: Any, name: str) -> np.ndarray:
    """``known_mask`` as a boolean ``[H, W]`` array; it must be bool or hold only 0 and 1."""
    if isinstance(known_mask, Image.Image):
        known_mask = np.asarray(known_mask)
    if not (isinstance(known_mask, np.ndarray) or is_torch_tensor(known_mask)):
        raise TypeError(
            f"`{name}` must be a boolean numpy array or torch tensor; got {_describe(known_mask)}"
        )
    array = to_numpy(known_mask)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[2]):
        array = array[0] if array.shape[0] == 1 else array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"`{name}` must have shape [H, W]; got {_describe(known_mask)}")
    if array.dtype == np.bool_:
        return array.copy()
    values = np.unique(array)
    if not np.all(np.isin(values, (0, 1))):
        n_bad = int((~np.isin(array, (0, 1))).sum())
        shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise ValueError(
            f"`{name}` must be binary (bool, or only 0 and 1; True/1 = known); {n_bad} values are "
            f"neither 0 nor 1 (values {{{shown}}})"
        )
    return array.astype(bool)


def resolve_known_mask(known_mask: Any, depth: np.ndarray | None, name: str = "known_mask") -> np.ndarray:
    """Return a boolean ``[H, W]`` mask, True = known, whose known pixels all have a valid depth.

    The rule, the same for every method and for both mask conventions (the CLI's
    ``--mask-convention fill`` is inverted first, then this rule applies):

    * Known pixels need a depth that is finite and > 0. Without ``known_mask`` the known pixels
      are exactly those. With ``known_mask``, pixels it marks known whose depth is 0 or
      non-finite (a "valid region" mask over sparse depth) become unknown; how many is logged
      as a warning (logger ``depthlab.inputs``).
    * A negative depth where the depth would be known (under the mask, or anywhere without a
      mask) is never a measurement: ``ValueError`` with the count and the minimum.
    * No known pixel left: ``ValueError`` saying why (all zero, all invalid under the mask).

    A given mask must be boolean or contain only the values 0 and 1. With ``depth=None`` only
    the mask itself is standardised.
    """
    if known_mask is None:
        if depth is None:
            raise ValueError(f"`{name}` is None and no depth was given to derive it from")
        depth = np.asarray(depth)
        _check_negative(depth, np.ones(depth.shape, bool), "")
        known = np.isfinite(depth) & (depth > 0)
        if not known.any():
            n_nan = int((~np.isfinite(depth)).sum())
            raise ValueError(
                f"`depth` has no known pixel: none of its {depth.size} values is finite and > 0 "
                f"({depth.size - n_nan} are 0, {n_nan} non-finite); 0/NaN mean unknown"
            )
        return known
    mask = _binary_mask(known_mask, name)
    if depth is None or np.shape(depth) != mask.shape:
        return mask  # sizes are checked (and reported) by check_completion_inputs
    depth = np.asarray(depth)
    _check_negative(depth, mask, f" at pixels `{name}` marks known")
    invalid = mask & ~(np.isfinite(depth) & (depth > 0))
    n_invalid = int(invalid.sum())
    if n_invalid:
        n_marked = int(mask.sum())
        if n_invalid == n_marked:
            raise ValueError(
                f"`{name}` marks {n_marked} pixels known but the depth is 0 or non-finite at all "
                "of them: no known pixel (known pixels need a depth > 0)"
            )
        logger.warning(
            "%s marks %d pixels known whose depth is 0 or non-finite; they are treated as "
            "unknown (%d known pixels remain)",
            name,
            n_invalid,
            n_marked - n_invalid,
        )
        mask &= ~invalid
    return mask


def _check_negative(depth: np.ndarray, where: np.ndarray, place: str) -> None:
    with np.errstate(invalid="ignore"):
        negative = where & (depth < 0)
    n_negative = int(negative.sum())
    if n_negative:
        every = " (every value)" if n_negative == depth.size else ""
        raise ValueError(
            f"`depth` has {n_negative} negative values{every}{place} (min "
            f"{float(depth[negative].min()):g}); depth must be > 0 where known (0 or NaN = unknown)"
        )


def check_completion_inputs(
    rgb: np.ndarray | None,
    depth: np.ndarray,
    known_mask: np.ndarray,
    *,
    allow_all_known: bool = False,
    index: int | None = None,
) -> None:
    """Check one standardised (image, depth, known_mask) triple; raise ``ValueError`` naming the problem.

    Checks: equal sizes, at least one known pixel, at least one unknown pixel (unless
    ``allow_all_known``), known depth finite and non-negative.
    """
    where = "" if index is None else f" (batch item {index})"
    if depth.shape != known_mask.shape:
        raise ValueError(
            f"`known_mask` has shape {known_mask.shape} but `depth` has shape {depth.shape}{where}"
        )
    if rgb is not None and rgb.shape[:2] != depth.shape:
        raise ValueError(
            f"`image` has size {rgb.shape[:2]} (H, W) but `depth` has shape {depth.shape}{where}; "
            "they must be pixel-aligned and of the same size"
        )
    n_known = int(known_mask.sum())
    if n_known == 0:
        raise ValueError(f"`known_mask` has no known pixel{where}: nothing to anchor the depth scale")
    if n_known == known_mask.size and not allow_all_known:
        raise ValueError(
            f"`known_mask` marks every pixel as known ({n_known} pixels){where}: there is nothing "
            "to complete; make sparse input first (depthlab.masks.make_mask, CLI --keep "
            "points:500) or re-estimate a full map with DepthLab (refine=True, CLI --refine)"
        )
    known_values = depth[known_mask]
    if not np.all(np.isfinite(known_values)):
        bad = int((~np.isfinite(known_values)).sum())
        raise ValueError(f"`depth` has {bad} non-finite values at known pixels{where}")
    if known_values.min() < 0:
        raise ValueError(
            f"`depth` has negative values at known pixels (min {float(known_values.min()):g}){where}"
        )
