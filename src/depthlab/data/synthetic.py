"""Procedural synthetic RGB-D dataset: ray-cast textured primitives with exact depth (no download).

Each sample is a scene seen by a pinhole camera at the origin looking along +z (x right, y down):
a back wall and a floor (planes, randomly tilted), optionally a side wall, and 2-6 boxes (rotated
about the vertical axis) and spheres in front of them. Every surface has its own texture
(checkerboard, stripes or a sum of random sinusoids, in surface coordinates) and Lambertian shading
under a random light. Depth is the exact z-depth of the first hit, in metres; every pixel hits a
surface, so the validity is all True unless ``invalid_fraction`` > 0 punches random invalid blobs
(to exercise the sensor-validity path).

Scenes are a pure function of ``(seed, index)``: ``np.random.default_rng([seed, index])``; use a
different ``seed`` for held-out frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depthlab.data.base import DepthDataset, DepthSample, SampleRef
from depthlab.data.registry import register_dataset

__all__ = ["SyntheticDataset", "render_scene"]

_FAR = np.float64(1e9)


def _texture(kind: int, u: np.ndarray, v: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Pattern in [0, 1] from surface coordinates ``u, v`` (metres)."""
    scale = params[0]
    if kind == 0:  # checkerboard
        return ((np.floor(u / scale) + np.floor(v / scale)) % 2).astype(np.float64)
    if kind == 1:  # stripes along a random direction
        angle = params[1] * np.pi
        return 0.5 + 0.5 * np.sign(np.sin((u * np.cos(angle) + v * np.sin(angle)) * np.pi / scale))
    # smooth noise: sum of 3 random sinusoids
    out = np.zeros_like(u)
    for k in range(3):
        fu, fv, phase = params[1 + 3 * k : 4 + 3 * k]
        out += np.sin((fu * u + fv * v) * 2 * np.pi / scale + phase * 2 * np.pi)
    return 0.5 + out / 6.0


def render_scene(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one random scene.

    Returns:
        ``(rgb uint8 [H, W, 3], depth float32 [H, W] metres, intrinsics [3, 3])``.
    """
    fov = np.radians(rng.uniform(50.0, 75.0))
    focal = 0.5 * width / np.tan(0.5 * fov)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    # [H, W, 3] ray directions with z = 1, so the ray parameter t is the z-depth.
    rays = np.stack([(cols - cx) / focal, (rows - cy) / focal, np.ones_like(cols)], axis=-1)

    depth = np.full((height, width), _FAR)  # t along the ray = z-depth since ray z = 1
    normal = np.zeros((height, width, 3))
    surface_uv = np.zeros((height, width, 2))
    surface_id = np.full((height, width), -1, dtype=np.int64)
    surfaces: list[tuple[np.ndarray, int, np.ndarray]] = []  # (colour, texture kind, params)

    def new_surface() -> int:
        colour = rng.uniform(0.15, 1.0, size=3)
        kind = int(rng.integers(3))
        params = np.concatenate([[rng.uniform(0.2, 1.2)], rng.uniform(-1.0, 1.0, size=9)])
        surfaces.append((colour, kind, params))
        return len(surfaces) - 1

    def commit(t: np.ndarray, n: np.ndarray, uv: np.ndarray, sid: int) -> None:
        closer = (t > 1e-6) & (t < depth)
        depth[closer] = t[closer]
        normal[closer] = n[closer] if n.ndim == 3 else n
        surface_uv[closer] = uv[closer]
        surface_id[closer] = sid

    def plane(n: np.ndarray, d: float) -> None:
        """Plane ``n . X = d`` (n unit)."""
        denom = rays @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(np.abs(denom) > 1e-9, d / denom, -1.0)
        points = rays * t[..., None]
        helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        axis_u = np.cross(n, helper)
        axis_u /= np.linalg.norm(axis_u)
        axis_v = np.cross(n, axis_u)
        uv = np.stack([points @ axis_u, points @ axis_v], axis=-1)
        commit(t, np.broadcast_to(-n if d > 0 else n, points.shape), uv, new_surface())

    # 1. Room: back wall (tilted), floor, maybe a side wall.
    back = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.15, 0.15), 1.0])
    back /= np.linalg.norm(back)
    plane(back, rng.uniform(5.0, 12.0))
    floor_n = np.array([0.0, 1.0, rng.uniform(-0.1, 0.1)])
    floor_n /= np.linalg.norm(floor_n)
    plane(floor_n, rng.uniform(1.0, 2.0))
    if rng.random() < 0.5:
        side = np.array([1.0 if rng.random() < 0.5 else -1.0, 0.0, rng.uniform(-0.5, 0.0)])
        side /= np.linalg.norm(side)
        plane(side, rng.uniform(1.5, 4.0))

    # 2. Objects: boxes (rotated about y) and spheres.
    for _ in range(int(rng.integers(2, 7))):
        z = rng.uniform(1.5, 7.0)
        centre = np.array([rng.uniform(-0.5, 0.5) * z, rng.uniform(-0.4, 0.4) * z * 0.6, z])
        if rng.random() < 0.5:
            radius = rng.uniform(0.2, 0.9)
            b = rays @ centre
            a = np.einsum("hwc,hwc->hw", rays, rays)
            disc = b**2 - a * (centre @ centre - radius**2)
            with np.errstate(invalid="ignore"):
                t = np.where(disc > 0, (b - np.sqrt(np.maximum(disc, 0))) / a, -1.0)
            points = rays * t[..., None]
            n = (points - centre) / radius
            longitude, latitude = np.arctan2(n[..., 0], n[..., 2]), np.arcsin(np.clip(n[..., 1], -1, 1))
            uv = radius * np.stack([longitude, latitude], -1)
            commit(t, n, uv, new_surface())
        else:
            half = rng.uniform(0.2, 0.9, size=3)
            angle = rng.uniform(0, np.pi)
            rot = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
            local_dir = rays @ rot  # R^T r
            local_origin = -(centre @ rot)
            with np.errstate(divide="ignore", invalid="ignore"):
                t1 = (-half - local_origin) / local_dir
                t2 = (half - local_origin) / local_dir
            t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
            t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
            hit = (t_near < t_far) & (t_far > 0)
            t = np.where(hit, t_near, -1.0)
            local_points = local_origin + local_dir * t[..., None]
            face = np.argmax(np.abs(local_points) / half, axis=-1)
            local_n = np.zeros_like(local_points)
            np.put_along_axis(
                local_n, face[..., None], np.sign(np.take_along_axis(local_points, face[..., None], -1)), -1
            )
            n = local_n @ rot.T
            uv = np.stack(
                [np.take_along_axis(local_points, ((face + k) % 3)[..., None], -1)[..., 0] for k in (1, 2)],
                axis=-1,
            )
            commit(t, n, uv, new_surface())

    # 3. Shade: texture x Lambert (light from a random upper direction) + ambient.
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1.0, -0.2), rng.uniform(-1.0, -0.3)])
    light /= np.linalg.norm(light)
    rgb = np.zeros((height, width, 3))
    for sid, (colour, kind, params) in enumerate(surfaces):
        where = surface_id == sid
        if not where.any():
            continue
        pattern = _texture(kind, surface_uv[where][:, 0], surface_uv[where][:, 1], params)
        n = normal[where]
        n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
        lambert = np.clip(-(n @ light), 0.0, 1.0)
        shade = 0.45 + 0.55 * lambert
        rgb[where] = colour[None] * (0.45 + 0.55 * pattern[:, None]) * shade[:, None]
    rgb += rng.normal(0.0, 0.01, size=rgb.shape)
    rgb_uint8 = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    intrinsics = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
    return rgb_uint8, depth.astype(np.float32), intrinsics


@register_dataset("synthetic", "procedural")
class SyntheticDataset(DepthDataset):
    """Procedural scenes (see the module docstring); ``root`` is ignored (no files).

    Args:
        root: ignored (accepted for the registry's ``get_dataset(name, root)``); may be None.
        length: number of samples.
        height, width: image size in pixels.
        seed: scene seed; sample ``i`` is ``render_scene(default_rng([seed, i]), ...)``.
        invalid_fraction: if > 0, about this fraction of pixels is marked invalid (random discs).
    """

    min_depth = 1e-3
    max_depth = 100.0

    def __init__(
        self,
        root: str | Path | None = None,
        *,
        length: int = 1000,
        height: int = 64,
        width: int = 64,
        seed: int = 0,
        invalid_fraction: float = 0.0,
        limit: int | None = None,
        **kwargs: Any,
    ) -> None:
        for name, value in (("length", length), ("height", height), ("width", width)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"`{name}` must be a positive integer; got {value!r}")
        if not 0.0 <= float(invalid_fraction) < 1.0:
            raise ValueError(f"`invalid_fraction` must be in [0, 1); got {invalid_fraction!r}")
        if kwargs:
            raise TypeError(f"SyntheticDataset got unexpected options {sorted(kwargs)}")
        self.root = Path(root) if root is not None else Path(".")
        self.split_file = None
        self.length = int(length) if limit is None else min(int(length), int(limit))
        self.height, self.width, self.seed = int(height), int(width), int(seed)
        self.invalid_fraction = float(invalid_fraction)
        self._tar = None
        self._tar_names = None
        self.samples = [
            SampleRef(f"synthetic_{self.seed}_{i:06d}", {}, {"index": i}) for i in range(self.length)
        ]

    def list_samples(self) -> list[SampleRef]:
        return self.samples

    def load(self, ref: SampleRef) -> DepthSample:
        index = int(ref.extra["index"])
        rng = np.random.default_rng([self.seed, index])
        rgb, depth, intrinsics = render_scene(rng, self.height, self.width)
        valid = np.isfinite(depth) & (depth > self.min_depth) & (depth < self.max_depth)
        if self.invalid_fraction > 0:
            cols, rows = np.meshgrid(np.arange(self.width), np.arange(self.height))
            holes = np.zeros_like(valid)
            while holes.mean() < self.invalid_fraction:
                r = rng.uniform(0.03, 0.12) * max(self.height, self.width)
                centre_x, centre_y = rng.uniform(0, self.width), rng.uniform(0, self.height)
                holes |= (cols - centre_x) ** 2 + (rows - centre_y) ** 2 < r**2
            valid &= ~holes
        depth = np.where(valid, depth, 0.0).astype(np.float32)
        return DepthSample(
            sample_id=ref.sample_id,
            rgb=rgb,
            depth=depth,
            valid_mask=valid,
            intrinsics=intrinsics,
            info={"seed": self.seed, "index": index},
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": type(self).__name__,
            "num_samples": len(self),
            "height": self.height,
            "width": self.width,
            "seed": self.seed,
            "invalid_fraction": self.invalid_fraction,
        }
