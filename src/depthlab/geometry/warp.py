"""Forward warping of an RGB-D view to another camera (z-buffered splatting)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from depthlab.geometry.camera import Camera, check_rigid
from depthlab.geometry.points import project, unproject

__all__ = ["WarpResult", "warp"]


@dataclass
class WarpResult:
    """A source view seen from the destination camera.

    Attributes:
        depth: float32 ``[H, W]`` z-depth in the destination camera (0 where unknown).
        known_mask: bool ``[H, W]``, True where some source pixel landed (disoccluded and
            out-of-view pixels are False: that is what a completion fills).
        rgb: uint8 ``[H, W, 3]`` warped colours (0 where unknown), or None without an input RGB.
        source_index: int64 ``[H, W]`` flat index ``row * W_src + col`` of the source pixel that
            won each destination pixel (-1 where unknown).
    """

    depth: np.ndarray
    known_mask: np.ndarray
    rgb: np.ndarray | None
    source_index: np.ndarray


def warp(
    depth: Any,
    rgb: Any,
    camera_src: Camera,
    src_to_dst: Any,
    camera_dst: Camera,
    splat_radius: int = 0,
    mask: Any = None,
) -> WarpResult:
    """Warp an RGB-D view to a new camera.

    Every known source pixel is unprojected, moved by ``src_to_dst`` and splatted into the
    destination image; the nearest surface wins each pixel (:func:`depthlab.geometry.project`).

    Args:
        depth: ``[H, W]`` source z-depth (0/non-finite = unknown).
        rgb: ``[H, W, 3]`` uint8 source image, or None.
        camera_src: intrinsics of the source view (checked against ``depth``).
        src_to_dst: 4x4 rigid transform from source-camera to destination-camera coordinates,
            ``inv(cam_to_world_dst) @ cam_to_world_src``. The identity returns the input.
        camera_dst: intrinsics of the destination view (its size is the output size).
        splat_radius: each point covers ``(2r+1)^2`` pixels, so that zooming in (moving closer,
            a longer focal length) leaves no one-pixel cracks; 0 = exact one pixel per point.
        mask: optional bool ``[H, W]``: only these source pixels are warped.

    Returns:
        :class:`WarpResult`.
    """
    transform = check_rigid(src_to_dst, "src_to_dst")
    cloud = unproject(depth, camera_src, mask=mask, cam_to_world=transform, rgb=rgb)
    warped_depth, index = project(cloud, camera_dst, splat_radius=splat_radius)
    known = index >= 0
    source_index = np.full(index.shape, -1, dtype=np.int64)
    if cloud.pixels is not None:
        pixels = cloud.pixels[index[known]]
        source_index[known] = pixels[:, 0] * camera_src.width + pixels[:, 1]
    warped_rgb = None
    if cloud.colors is not None:
        warped_rgb = np.zeros((camera_dst.height, camera_dst.width, 3), dtype=np.uint8)
        warped_rgb[known] = cloud.colors[index[known]]
    return WarpResult(warped_depth, known, warped_rgb, source_index)
