"""z-depth <-> ray distance (range), disparity <-> depth.

Unknown values (0, negative, non-finite) stay unknown: they come out as 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from depthlab.geometry.camera import Camera

__all__ = ["depth_to_range", "range_to_depth", "disparity_to_depth", "depth_to_disparity"]


def _map(values: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be an [H, W] map; got shape {array.shape}")
    valid = np.isfinite(array) & (array > 0)
    return array, valid


def _ray_norm(camera: Camera, shape: tuple[int, int], name: str) -> np.ndarray:
    camera.check_size(shape[1], shape[0], name)
    return np.linalg.norm(camera.rays(), axis=2)  # [H, W], >= 1


def depth_to_range(depth: Any, camera: Camera) -> np.ndarray:
    """z-depth ``[H, W]`` -> distance from the camera centre along each pixel's ray (same units)."""
    array, valid = _map(depth, "depth")
    out = np.where(valid, array * _ray_norm(camera, array.shape, "depth"), 0.0)
    return out.astype(np.float32)


def range_to_depth(distance: Any, camera: Camera) -> np.ndarray:
    """Ray distance ``[H, W]`` (e.g. a ToF/LiDAR range image) -> z-depth (same units)."""
    array, valid = _map(distance, "distance")
    out = np.where(valid, array / _ray_norm(camera, array.shape, "distance"), 0.0)
    return out.astype(np.float32)


def _check_stereo(focal: float, baseline: float) -> tuple[float, float]:
    focal, baseline = float(focal), float(baseline)
    if not (np.isfinite(focal) and focal > 0):
        raise ValueError(f"`focal` must be a positive number of pixels; got {focal!r}")
    if not (np.isfinite(baseline) and baseline > 0):
        raise ValueError(f"`baseline` must be a positive distance; got {baseline!r}")
    return focal, baseline


def disparity_to_depth(disparity: Any, focal: float, baseline: float) -> np.ndarray:
    """Stereo disparity (pixels) -> depth ``focal * baseline / disparity`` (units of ``baseline``)."""
    focal, baseline = _check_stereo(focal, baseline)
    array = np.asarray(disparity, dtype=np.float64)
    valid = np.isfinite(array) & (array > 0)
    safe = np.where(valid, array, 1.0)
    return np.where(valid, focal * baseline / safe, 0.0).astype(np.float32)


def depth_to_disparity(depth: Any, focal: float, baseline: float) -> np.ndarray:
    """Depth -> stereo disparity in pixels, ``focal * baseline / depth`` (0 where unknown)."""
    return disparity_to_depth(depth, focal, baseline)  # the same map: d = f b / z <=> z = f b / d
