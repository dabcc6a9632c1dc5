"""Training samples: augmentation, random known mask, normalisation and masked-depth fill.

What the model sees in training is what :class:`~depthlab.pipeline.DepthLabPipeline` feeds it at
inference (``spec/inference.md`` steps 6-8), except for the random scale normalisation:

1. **Augment** (:func:`augment`): random crop with the target aspect ratio (side ``crop_scale``
   of the largest such window, uniform position), resize to the training size (RGB: Pillow
   bicubic as the pipeline; depth and validity: nearest, so no depth is invented across edges or
   from invalid pixels), horizontal flip with probability ``hflip_p``.
2. **Known mask**: ``depthlab.masks.MaskMixture.sample(valid, rng)`` at training resolution (known
   pixels are always valid).
3. **Normalise** (:func:`normalize_training_depth`): an affine map sends the known depth range
   ``[lo, hi]`` to ``[a, b]`` inside ``[-1, 1]``; the full depth goes through the same map.
   ``mode="inference"``: ``[a, b] = [-1, 1]`` exactly as the pipeline (unknown depth outside the
   known range then falls outside ``[-1, 1]``). ``mode="random"`` (the paper's random scale
   normalisation): the span ``b - a`` is drawn uniformly in ``[min_span, 1] * s_max`` and the offset
   uniformly among those that keep the whole valid depth range inside ``[-1, 1]``, where
   ``s_max = 2 (hi - lo) / (d_max - d_min)`` is the largest span that allows it. The model thus
   sees known ranges at many scales and unknown depth beyond the known range.
4. **Masked depth**: normalised depth with unknown pixels set to 0, filled by piecewise-linear
   interpolation (0 outside the convex hull of the known pixels) as the pipeline does
   (``fill="linear_fast"``: ``linear_fill(exact=False)``; ``"linear_exact"``; ``"nearest"``).
5. **Model inputs**: the unknown mask (1 = unknown, the pipeline's ``~known_mask``); invalid GT
   pixels of the normalised depth are filled with the nearest valid value (the VAE needs a full
   map), and the loss ignores latent cells that contain an invalid pixel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from depthlab import preprocessing
from depthlab.masks import MaskMixture

__all__ = [
    "AugmentationConfig",
    "NormalizationConfig",
    "augment",
    "normalize_training_depth",
    "masked_depth_fill",
    "make_training_sample",
    "FILL_MODES",
]

FILL_MODES = ("linear_fast", "linear_exact", "nearest")


@dataclass(frozen=True)
class AugmentationConfig:
    """``crop_scale``: (lo, hi) side fraction of the largest target-aspect window; ``hflip_p``."""

    crop_scale: tuple[float, float] = (1.0, 1.0)
    hflip_p: float = 0.5

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> AugmentationConfig:
        config = dict(config or {})
        low, high = (float(v) for v in config.get("crop_scale", (1.0, 1.0)))
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(
                f"`augmentation.crop_scale` must be (lo, hi) with 0 < lo <= hi <= 1; got {(low, high)}"
            )
        hflip_p = float(config.get("hflip_p", 0.5))
        if not 0.0 <= hflip_p <= 1.0:
            raise ValueError(f"`augmentation.hflip_p` must be in [0, 1]; got {hflip_p}")
        return cls((low, high), hflip_p)


@dataclass(frozen=True)
class NormalizationConfig:
    """``mode``: ``"random"`` or ``"inference"``; ``min_span``: lower bound of the span fraction."""

    mode: str = "random"
    min_span: float = 0.5

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> NormalizationConfig:
        config = dict(config or {})
        mode = config.get("mode", "random")
        if mode not in ("random", "inference"):
            raise ValueError(f"`normalization.mode` must be 'random' or 'inference'; got {mode!r}")
        min_span = float(config.get("min_span", 0.5))
        if not 0.0 < min_span <= 1.0:
            raise ValueError(f"`normalization.min_span` must be in (0, 1]; got {min_span}")
        return cls(mode, min_span)


def augment(
    rgb: np.ndarray,
    depth: np.ndarray,
    valid: np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    config: AugmentationConfig = AugmentationConfig(),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random crop + resize to ``size = (H, W)`` + horizontal flip.

    Args:
        rgb: uint8 ``[h, w, 3]``.
        depth: float ``[h, w]``.
        valid: bool ``[h, w]``.
        size: ``(H, W)`` output size.
        rng: the random generator (crop scale, position, flip; in that order).
        config: crop/flip settings.

    Returns:
        ``(rgb uint8 [H, W, 3], depth float32 [H, W], valid bool [H, W])``.
    """
    height, width = depth.shape
    out_h, out_w = int(size[0]), int(size[1])
    # Largest window with the target aspect ratio, scaled by a random side fraction.
    base = min(height / out_h, width / out_w)
    low, high = config.crop_scale
    scale = rng.uniform(low, high) if low < high else low
    crop_h = max(1, min(height, int(round(out_h * base * scale))))
    crop_w = max(1, min(width, int(round(out_w * base * scale))))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    window = (slice(top, top + crop_h), slice(left, left + crop_w))
    rgb_crop, depth_crop, valid_crop = rgb[window], depth[window], valid[window]
    if (crop_h, crop_w) != (out_h, out_w):
        rgb_crop = preprocessing.resize_rgb(np.ascontiguousarray(rgb_crop), (out_h, out_w))
        depth_crop = np.ascontiguousarray(depth_crop, dtype=np.float32)
        depth_crop = cv2.resize(depth_crop, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
        valid_crop = preprocessing.resize_known_mask(np.ascontiguousarray(valid_crop), (out_h, out_w))
    if rng.random() < config.hflip_p:
        rgb_crop, depth_crop, valid_crop = rgb_crop[:, ::-1], depth_crop[:, ::-1], valid_crop[:, ::-1]
    return (
        np.ascontiguousarray(rgb_crop, dtype=np.uint8),
        np.ascontiguousarray(depth_crop, dtype=np.float32),
        np.ascontiguousarray(valid_crop, dtype=bool),
    )


def normalize_training_depth(
    depth: np.ndarray,
    valid: np.ndarray,
    known_mask: np.ndarray,
    rng: np.random.Generator,
    config: NormalizationConfig = NormalizationConfig(),
) -> tuple[np.ndarray, tuple[float, float]]:
    """Affine normalisation of ``depth`` with the known range mapped to ``[a, b]`` (module docstring).

    Returns:
        ``(normalised depth float32 [H, W] (meaningful on valid pixels), (a, b))``.
    """
    known_values = depth[known_mask].astype(np.float64)
    if known_values.size == 0:
        raise ValueError("`known_mask` has no known pixel")
    lo, hi = float(known_values.min()), float(known_values.max())
    if config.mode == "inference":
        normalized, _, _ = preprocessing.normalize_depth(depth, known_mask, 1.0)
        return normalized, (-1.0, 1.0)
    valid_values = depth[valid].astype(np.float64)
    d_min, d_max = float(valid_values.min()), float(valid_values.max())
    denominator = hi - lo + 1e-6
    s_max = 2.0 * denominator / max(d_max - d_min + 1e-6, denominator)  # <= 2
    span = s_max * rng.uniform(config.min_span, 1.0)
    gain = span / denominator  # normalised units per depth unit
    # Offset range: full valid range [d_min, d_max] must land inside [-1, 1].
    a_low = -1.0 + (lo - d_min) * gain
    a_high = 1.0 - (d_max - lo) * gain
    a = rng.uniform(a_low, a_high) if a_high > a_low else 0.5 * (a_low + a_high)
    normalized = a + (depth.astype(np.float64) - lo) * gain
    return normalized.astype(np.float32), (float(a), float(a + span))


def masked_depth_fill(
    normalized: np.ndarray, known_mask: np.ndarray, fill: str = "linear_fast"
) -> np.ndarray:
    """Unknown pixels set to 0, then filled as the pipeline does (0 outside the known hull)."""
    masked = np.where(known_mask, normalized, 0.0).astype(np.float32)
    if fill == "linear_fast":
        return preprocessing.linear_fill(masked, known_mask, 0.0, exact=False)
    if fill == "linear_exact":
        return preprocessing.linear_fill(masked, known_mask, 0.0, exact=True)
    if fill == "nearest":
        return preprocessing.nearest_fill(masked, known_mask, exact=False)
    raise ValueError(f"`fill` must be one of {FILL_MODES}; got {fill!r}")


def make_training_sample(
    rgb: np.ndarray,
    depth: np.ndarray,
    valid: np.ndarray,
    rng: np.random.Generator,
    masks: MaskMixture,
    size: Sequence[int],
    augmentation: AugmentationConfig = AugmentationConfig(),
    normalization: NormalizationConfig = NormalizationConfig(),
    fill: str = "linear_fast",
) -> dict[str, np.ndarray]:
    """One training sample (all ``[H, W]`` at the training ``size``).

    Returns a dict of numpy arrays:
        ``rgb`` uint8 ``[H, W, 3]`` (turned into the VAE input by
        :func:`depthlab.models.conditioning.rgb_to_vae_input`, as at inference);
        ``depth_norm`` float32 ``[H, W]`` (invalid pixels nearest-filled); ``masked_depth`` float32
        ``[H, W]``; ``unknown`` float32 ``[H, W]`` (1 = unknown, the mask input);
        ``known_mask`` bool; ``valid_mask`` bool; ``target_range`` float32 ``[2]`` (a, b).
    """
    size = (int(size[0]), int(size[1]))
    rgb, depth, valid = augment(rgb, depth, valid, size, rng, augmentation)
    valid = valid & np.isfinite(depth) & (depth > 0)
    if valid.sum() < 3:
        raise ValueError(f"sample has {int(valid.sum())} valid depth pixels after augmentation; need >= 3")
    known_mask = masks.sample(valid, rng)
    normalized, target_range = normalize_training_depth(depth, valid, known_mask, rng, normalization)
    if not valid.all():
        normalized = preprocessing.nearest_fill(normalized, valid, exact=False)
    masked = masked_depth_fill(normalized, known_mask, fill)
    return {
        "rgb": rgb,
        "depth_norm": normalized.astype(np.float32),
        "masked_depth": masked.astype(np.float32),
        "unknown": (~known_mask).astype(np.float32),
        "known_mask": known_mask,
        "valid_mask": valid,
        "target_range": np.asarray(target_range, dtype=np.float32),
    }
