"""Depth map <-> point cloud: :func:`unproject`, :func:`project` (deterministic z-buffer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from depthlab.geometry.camera import Camera, check_rigid
from depthlab.io import nearest_per_pixel

__all__ = [
    "PointCloud",
    "unproject",
    "project",
    "transform_points",
    "estimate_normals",
    "render_points",
    "zbuffer",
]


@dataclass
class PointCloud:
    """Points with optional per-point colour, normal and source pixel.

    Attributes:
        points: float32 ``[N, 3]`` (camera or world frame, depth units).
        colors: uint8 ``[N, 3]`` RGB, or None.
        normals: float32 ``[N, 3]`` unit normals (facing the camera that saw them), or None.
        pixels: int64 ``[N, 2]`` ``(row, col)`` of the pixel each point came from, or None (e.g.
            for a cloud fused from several views).
    """

    points: np.ndarray
    colors: np.ndarray | None = None
    normals: np.ndarray | None = None
    pixels: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 3)
        count = len(self.points)
        for name, dtype in (("colors", np.uint8), ("normals", np.float32), ("pixels", np.int64)):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value)
            if name == "colors" and value.dtype != np.uint8:
                value = np.clip(np.rint(value), 0, 255)
            columns = 2 if name == "pixels" else 3
            if value.shape != (count, columns):
                raise ValueError(f"PointCloud.{name} must be [{count}, {columns}]; got shape {value.shape}")
            setattr(self, name, value.astype(dtype))

    def __len__(self) -> int:
        return len(self.points)

    def select(self, keep: Any) -> PointCloud:
        """The subset ``keep`` (bool ``[N]`` or indices)."""
        return PointCloud(
            self.points[keep],
            None if self.colors is None else self.colors[keep],
            None if self.normals is None else self.normals[keep],
            None if self.pixels is None else self.pixels[keep],
        )

    def transformed(self, transform: Any) -> PointCloud:
        """The cloud moved by a rigid 4x4 ``transform`` (normals rotated, pixels kept)."""
        matrix = check_rigid(transform, "transform")
        normals = None if self.normals is None else (self.normals.astype(np.float64) @ matrix[:3, :3].T)
        return PointCloud(transform_points(self.points, matrix), self.colors, normals, self.pixels)

    @staticmethod
    def concatenate(clouds: list[PointCloud]) -> PointCloud:
        """One cloud from several; an attribute is kept only when every input has it."""
        if not clouds:
            return PointCloud(np.zeros((0, 3), np.float32))

        def join(name: str) -> np.ndarray | None:
            parts = [getattr(c, name) for c in clouds]
            return None if any(p is None for p in parts) else np.concatenate(parts)

        return PointCloud(join("points"), join("colors"), join("normals"), join("pixels"))


def transform_points(points: Any, transform: Any) -> np.ndarray:
    """``transform[:3, :3] @ p + transform[:3, 3]`` for points ``[N, 3]`` (float64 math, float32 out)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    matrix = np.asarray(transform, dtype=np.float64)
    return (points @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)


def _check_depth(depth: Any, camera: Camera, name: str = "depth") -> np.ndarray:
    array = np.asarray(depth)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be an [H, W] map; got shape {array.shape}")
    if not isinstance(camera, Camera):
        raise TypeError(f"`camera` must be a depthlab.geometry.Camera; got {type(camera).__name__}")
    camera.check_size(array.shape[1], array.shape[0], "camera")
    return array


def _point_map(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """Camera-frame points of every pixel, float64 ``[H, W, 3]`` (NaN where depth is unknown)."""
    z = depth.astype(np.float64)
    z = np.where(np.isfinite(z) & (z > 0), z, np.nan)
    return camera.rays() * z[..., None]


def estimate_normals(depth: Any, camera: Camera) -> np.ndarray:
    """Unit normals ``[H, W, 3]`` (camera frame) from the depth map's point map.

    Tangents are central differences of neighbouring 3D points (one-sided where a neighbour is
    unknown); the normal is their cross product, turned to face the camera. Pixels with no known
    neighbour along a row or column get the reversed viewing ray, ``-ray / |ray|``. Unknown pixels
    are NaN.
    """
    depth = _check_depth(depth, camera)
    points = _point_map(depth, camera)

    def tangent(axis: int) -> np.ndarray:
        forward = np.full_like(points, np.nan)
        backward = np.full_like(points, np.nan)
        if axis == 1:
            forward[:, :-1] = points[:, 1:] - points[:, :-1]
            backward[:, 1:] = points[:, 1:] - points[:, :-1]
        else:
            forward[:-1] = points[1:] - points[:-1]
            backward[1:] = points[1:] - points[:-1]
        central = (forward + backward) / 2.0
        out = np.where(np.isfinite(central), central, forward)
        return np.where(np.isfinite(out), out, backward)

    normals = np.cross(tangent(1), tangent(0))  # x-tangent x y-tangent faces -z for a fronto-parallel plane
    norm = np.linalg.norm(normals, axis=2, keepdims=True)
    rays = camera.rays()
    fallback = -rays / np.linalg.norm(rays, axis=2, keepdims=True)
    good = np.isfinite(norm) & (norm > 0)
    normals = np.where(good, normals / np.where(good, norm, 1.0), fallback)
    flip = np.sum(normals * rays, axis=2, keepdims=True) > 0
    normals = np.where(flip, -normals, normals)
    normals[~np.isfinite(points[..., 2])] = np.nan
    return normals.astype(np.float32)


def unproject(
    depth: Any,
    camera: Camera,
    mask: Any = None,
    cam_to_world: Any = None,
    rgb: Any = None,
    normals: bool = False,
) -> PointCloud:
    """Lift a z-depth map to 3D points, one per known pixel, in row-major pixel order.

    Args:
        depth: ``[H, W]`` z-depth; 0/negative/non-finite = unknown (no point).
        camera: intrinsics for ``W x H`` (checked).
        mask: optional bool ``[H, W]``; only pixels where it is True (and depth is known) give points.
        cam_to_world: optional 4x4 rigid camera-to-world pose; points (and normals) are returned
            in the world frame. None = camera frame.
        rgb: optional uint8 ``[H, W, 3]`` image; its pixels become the point colours.
        normals: also estimate normals from the depth map (:func:`estimate_normals`).

    Returns:
        :class:`PointCloud` with ``pixels`` = ``(row, col)`` of each point.
    """
    depth = _check_depth(depth, camera)
    height, width = depth.shape
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != depth.shape:
            raise ValueError(f"`mask` has shape {mask.shape}; expected {depth.shape} like `depth`")
        valid &= mask.astype(bool)
    rows, cols = np.nonzero(valid)
    z = depth[rows, cols].astype(np.float64)
    points = np.stack([(cols - camera.cx) / camera.fx * z, (rows - camera.cy) / camera.fy * z, z], axis=1)
    colors = None
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape[:2] != depth.shape or rgb.ndim != 3 or rgb.shape[2] < 3:
            raise ValueError(f"`rgb` must be [{height}, {width}, 3] like `depth`; got shape {rgb.shape}")
        colors = rgb[rows, cols, :3]
    normal_values = estimate_normals(depth, camera)[rows, cols] if normals else None
    cloud = PointCloud(points, colors, normal_values, np.stack([rows, cols], axis=1))
    if cam_to_world is not None:
        pose = check_rigid(cam_to_world, "cam_to_world")
        cloud.points = transform_points(points, pose)  # from float64, not the rounded float32
        if cloud.normals is not None:
            cloud.normals = (cloud.normals.astype(np.float64) @ pose[:3, :3].T).astype(np.float32)
    return cloud


def zbuffer(flat_pixel: np.ndarray, z: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Winner per pixel among candidates: nearest ``z``, ties broken by the lower candidate index.

    Args:
        flat_pixel: int ``[M]`` flat pixel index ``row * W + col`` of each candidate.
        z: ``[M]`` depth of each candidate.
        size: number of pixels ``H * W``.

    Returns:
        ``(pixels, winners)``: the distinct pixels hit and, for each, the winning candidate index.
        Uses one lexsort, so the result never depends on numpy's order of repeated assignments
        (the rule lives in :func:`depthlab.io.nearest_per_pixel`, which reads point lists with it).
    """
    return nearest_per_pixel(flat_pixel, z)


def _camera_points(points: Any, world_to_cam: Any) -> np.ndarray:
    if isinstance(points, PointCloud):
        points = points.points
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"`points` must be [N, 3]; got shape {points.shape}")
    if world_to_cam is not None:
        matrix = check_rigid(world_to_cam, "world_to_cam")
        points = points @ matrix[:3, :3].T + matrix[:3, 3]
    return points


def project(
    points: Any,
    camera: Camera,
    world_to_cam: Any = None,
    min_depth: float = 0.0,
    splat_radius: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Render points into a depth map with a z-buffer.

    Args:
        points: ``[N, 3]`` array or :class:`PointCloud` (world frame if ``world_to_cam`` is given,
            else camera frame).
        camera: intrinsics of the output image.
        world_to_cam: optional 4x4 rigid world-to-camera transform (the inverse of the pose).
        min_depth: points with ``z <= min_depth`` are dropped (behind or on the camera plane).
        splat_radius: each point also covers the ``(2r+1) x (2r+1)`` pixels around its own (at its
            depth); 0 = one pixel per point.

    Returns:
        ``(depth, index)``: float32 ``[H, W]`` z-depth (0 where no point lands) and int64
        ``[H, W]`` index of the winning point (-1 where none). Per pixel the nearest point wins;
        equal depths go to the lower point index (deterministic).
    """
    xyz = _camera_points(points, world_to_cam)
    radius = int(splat_radius)
    if radius < 0 or radius != splat_radius:
        raise ValueError(f"`splat_radius` must be a non-negative integer; got {splat_radius!r}")
    height, width = camera.height, camera.width
    depth_map = np.zeros((height, width), dtype=np.float32)
    index_map = np.full((height, width), -1, dtype=np.int64)
    z = xyz[:, 2]
    front = np.nonzero(np.isfinite(xyz).all(axis=1) & (z > min_depth))[0]
    if len(front) == 0:
        return depth_map, index_map
    z = z[front]
    cols = np.round(camera.fx * xyz[front, 0] / z + camera.cx)
    rows = np.round(camera.fy * xyz[front, 1] / z + camera.cy)
    ids = front
    if radius:
        offsets = np.arange(-radius, radius + 1)
        d_rows, d_cols = np.meshgrid(offsets, offsets, indexing="ij")
        rows = (rows[:, None] + d_rows.ravel()[None]).ravel()
        cols = (cols[:, None] + d_cols.ravel()[None]).ravel()
        z = np.repeat(z, d_rows.size)
        ids = np.repeat(ids, d_rows.size)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    rows, cols, z, ids = rows[inside].astype(np.int64), cols[inside].astype(np.int64), z[inside], ids[inside]
    # candidates are ordered by point index (then offset), so the tie-break is by point index
    pixels, winners = zbuffer(rows * width + cols, z, height * width)
    depth_map.ravel()[pixels] = z[winners]
    index_map.ravel()[pixels] = ids[winners]
    return depth_map, index_map


def render_points(
    cloud: PointCloud,
    camera: Camera,
    world_to_cam: Any = None,
    splat_radius: int = 1,
    background: int = 255,
) -> np.ndarray:
    """A picture of a coloured point cloud seen from ``camera``: uint8 ``[H, W, 3]``.

    Points without colours are drawn grey; empty pixels get ``background``.
    """
    _, index = project(cloud, camera, world_to_cam, splat_radius=splat_radius)
    image = np.full((camera.height, camera.width, 3), background, dtype=np.uint8)
    hit = index >= 0
    colors = cloud.colors if cloud.colors is not None else np.full((len(cloud), 3), 128, np.uint8)
    image[hit] = colors[index[hit]]
    return image
