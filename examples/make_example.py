"""Render the bundled example: a small textured room with a box and a ball, with exact depth.

Writes (into ``examples/room/`` by default):

* ``rgb.png``       320x240 RGB rendering (procedural textures, Lambert shading);
* ``depth_gt.png``  exact planar depth (z), 16-bit PNG in millimetres (``--depth-scale 1000``);
* ``depth.png``     the same with holes like a structured-light sensor's (0 = unknown): a
  reflective "window" on the back wall, grazing-angle rims of the ball, a shadow band at the
  box's left edge and a large elliptical dropout;
* ``mask.png``      the known mask of ``depth.png`` (white = known).

Everything is computed here from simple primitives (ray casting of planes, a box and a sphere);
run ``python examples/make_example.py`` to regenerate (deterministic).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT, FOCAL = 320, 240, 260.0
LIGHT = np.array([-0.4, -1.0, -0.5]) / np.linalg.norm([-0.4, -1.0, -0.5])  # direction to light


def _rays() -> np.ndarray:
    """Unit ray directions ``[H, W, 3]`` in camera coordinates (x right, y down, z forward)."""
    u, v = np.meshgrid(np.arange(WIDTH) + 0.5, np.arange(HEIGHT) + 0.5)
    rays = np.stack([(u - WIDTH / 2) / FOCAL, (v - HEIGHT / 2) / FOCAL, np.ones_like(u)], axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def _plane(rays: np.ndarray, axis: int, offset: float) -> np.ndarray:
    """Ray parameter t of the plane ``x[axis] = offset`` (inf where missed or behind)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = offset / rays[..., axis]
    return np.where(t > 1e-6, t, np.inf)


def _box(rays: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test: ray parameter of the entry point and the index of the entry face axis."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = lo / rays
        t2 = hi / rays
    near = np.minimum(t1, t2)
    far = np.maximum(t1, t2)
    t_in = near.max(axis=-1)
    t_out = far.min(axis=-1)
    hit = (t_in <= t_out) & (t_in > 1e-6)
    return np.where(hit, t_in, np.inf), near.argmax(axis=-1)


def _sphere(rays: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    b = rays @ centre
    disc = b * b - (centre @ centre - radius * radius)
    t = b - np.sqrt(np.maximum(disc, 0.0))
    return np.where((disc > 0) & (t > 1e-6), t, np.inf)


def render() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``rgb`` uint8 [H, W, 3], exact depth float [H, W] (m), known mask bool [H, W]."""
    rays = _rays()
    box_lo, box_hi = np.array([-1.3, 0.35, 2.4]), np.array([-0.3, 1.2, 3.3])
    ball_centre, ball_radius = np.array([0.9, 0.65, 3.0]), 0.55
    box_t, box_axis = _box(rays, box_lo, box_hi)
    candidates = np.stack([
        _plane(rays, 1, 1.2),    # 0 floor (y = 1.2)
        _plane(rays, 2, 5.0),    # 1 back wall (z = 5)
        _plane(rays, 0, -2.0),   # 2 left wall (x = -2)
        _plane(rays, 0, 2.4),    # 3 right wall (x = 2.4)
        _plane(rays, 1, -1.3),   # 4 ceiling (y = -1.3)
        box_t,                   # 5 box
        _sphere(rays, ball_centre, ball_radius),  # 6 ball
    ])
    surface = candidates.argmin(axis=0)
    t = candidates.min(axis=0)
    points = rays * t[..., None]
    depth = points[..., 2]

    normals = np.zeros_like(points)
    normals[surface == 0] = (0, -1, 0)
    normals[surface == 1] = (0, 0, -1)
    normals[surface == 2] = (1, 0, 0)
    normals[surface == 3] = (-1, 0, 0)
    normals[surface == 4] = (0, 1, 0)
    for axis in range(3):
        on_face = (surface == 5) & (box_axis == axis)
        normals[on_face, axis] = -np.sign(rays[on_face, axis])
    ball = surface == 6
    normals[ball] = (points[ball] - ball_centre) / ball_radius

    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    colour = np.zeros_like(points)
    checker = ((np.floor(x / 0.5) + np.floor(z / 0.5)) % 2)[..., None]
    floor_colour = checker * np.array([0.75, 0.6, 0.4]) + (1 - checker) * np.array([0.35, 0.25, 0.2])
    colour[surface == 0] = floor_colour[surface == 0]
    stripes = ((np.floor(x / 0.3) % 2) * 0.25 + 0.6)[..., None]
    colour[surface == 1] = (stripes * np.array([0.55, 0.7, 0.85]))[surface == 1]
    bands = ((np.floor(y / 0.4) % 2) * 0.2 + 0.6)[..., None]
    colour[surface == 2] = (bands * np.array([0.85, 0.8, 0.55]))[surface == 2]
    colour[surface == 3] = (0.75, 0.55, 0.6)
    colour[surface == 4] = (0.9, 0.9, 0.9)
    box_checker = ((np.floor(x / 0.25) + np.floor(y / 0.25) + np.floor(z / 0.25)) % 2)[..., None]
    colour[surface == 5] = (box_checker * np.array([0.2, 0.5, 0.25]) + 0.25)[surface == 5]
    latitude = ((np.floor((points[..., 1] - ball_centre[1]) / 0.12) % 2) * 0.4 + 0.5)[..., None]
    colour[ball] = (latitude * np.array([0.9, 0.3, 0.2]))[ball]
    shade = 0.35 + 0.65 * np.clip(normals @ LIGHT, 0.0, 1.0)
    rgb = np.clip(colour * shade[..., None], 0, 1)
    rgb = (rgb * 255 + 0.5).astype(np.uint8)

    # sensor-like holes
    u, v = np.meshgrid(np.arange(WIDTH), np.arange(HEIGHT))
    known = np.ones(depth.shape, bool)
    known &= ~((surface == 1) & (np.abs(x - 0.6) < 0.7) & (np.abs(y + 0.3) < 0.45))  # window
    grazing = np.abs(np.sum(normals * rays, axis=-1)) < 0.35
    known &= ~(ball & grazing)                                                     # ball rims
    box_cols = np.flatnonzero((surface == 5).any(axis=0))
    if box_cols.size:
        left = box_cols.min()
        known &= ~((u >= left - 10) & (u < left) & (surface != 5) & (v > HEIGHT * 0.45))  # shadow
    known &= ((u - 250) / 45.0) ** 2 + ((v - 200) / 28.0) ** 2 > 1                # dropout
    return rgb, depth, known


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "room"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rgb, depth, known = render()
    depth_mm = np.rint(depth * 1000.0).astype(np.uint16)
    Image.fromarray(rgb).save(out / "rgb.png", optimize=True)
    Image.fromarray(depth_mm).save(out / "depth_gt.png", optimize=True)
    Image.fromarray(np.where(known, depth_mm, 0).astype(np.uint16)).save(out / "depth.png", optimize=True)
    Image.fromarray((known * 255).astype(np.uint8)).save(out / "mask.png", optimize=True)
    print(f"wrote {out}: {known.mean():.1%} of the pixels known, depth {depth.min():.2f}-{depth.max():.2f} m")  # noqa: T201


if __name__ == "__main__":
    main()
