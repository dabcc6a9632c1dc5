"""Known-depth mask protocols, shared by evaluation and training.

Every function returns a boolean ``known_mask`` ``[H, W]`` (True = depth known/kept), draws all
randomness from an explicit ``np.random.Generator`` and never marks a pixel known where ``valid``
(the ground-truth validity) is False. The full, re-implementable definitions are in
``docs/protocols.md``; the docstrings below state the same rules.

Protocol strings (for :func:`make_mask` and :class:`MaskMixture`)::

    "ratio:5"       uniform random 5 % of the valid pixels           -> random_ratio(valid, 0.05)
    "points:500"    exactly 500 random valid pixels                  -> random_points(valid, 500)
    "holes:0.3"     large holes covering 30 % of the image unknown   -> large_holes(valid, 0.3)
    "lidar:64"      64-beam spinning-LiDAR scan lines                -> lidar_lines(valid, rng, 64)
    "lidar:64:4"    the same, keeping every 4th beam (16 lines)      -> keep_every=4
    "border:0.2"    outpainting: a band of 20 % of H/W on all sides  -> border(valid, 0.2, "all")
    "sensor"        known = the sensor's own valid pixels            -> sensor_holes(valid)

Sensor-like pattern suite (need more than ``valid``: pass ``rgb``/``depth``/``intrinsics``)::

    "orb:500"       500 ORB keypoints of the RGB (SfM-like)          -> keypoints(rgb, valid, 500, rng, "orb")
    "sift:500"      the same with SIFT                                -> keypoints(..., "sift")
    "range:0.3"     a depth interval holding 30 % of the valid pixels removed -> depth_range_hole(...)
    "blob:0.1"      one object-sized elliptical hole, 10 % of the image       -> object_blob(valid, 0.1, rng)
    "lines:16"      16 of the 64 scan lines of a LiDAR depth map kept         -> scan_lines(depth, K, 16)

A numeric parameter may be a range ``"lo-hi"`` (``"ratio:1-10"``, ``"points:100-2000"``,
``"holes:0.2-0.6"``, ``"border:0.1-0.3"``): the value is then drawn per call from ``rng``
(``uniform(lo, hi)`` for real parameters, ``integers(lo, hi + 1)`` for integer ones) before the
mask is drawn; a ``border`` range also draws the sides at random.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = [
    "random_ratio",
    "random_points",
    "large_holes",
    "lidar_lines",
    "border",
    "sensor_holes",
    "make_mask",
    "sparsify",
    "parse_protocol",
    "protocol_rng",
    "MaskMixture",
    "HOLE_SHAPES",
    "keypoints",
    "depth_range_hole",
    "object_blob",
    "scan_line_ids",
    "scan_lines",
    "KITTI_LIDAR_OFFSET",
    "protocol_needs",
]

HOLE_SHAPES = ("strokes", "ellipses", "rectangles")
_SIDES = ("top", "bottom", "left", "right")


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------
def _check_valid(valid: Any) -> np.ndarray:
    array = np.asarray(valid)
    if array.ndim != 2:
        raise ValueError(f"`valid` must be a [H, W] mask; got shape {array.shape}")
    if array.dtype != np.bool_:
        values = np.unique(array)
        if not np.all(np.isin(values, (0, 1))):
            raise ValueError(f"`valid` must be boolean or 0/1; got values {values[:6].tolist()}")
        array = array.astype(bool)
    return array


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            "`rng` must be a numpy.random.Generator (e.g. np.random.default_rng(0)); "
            f"got {type(rng).__name__}"
        )
    return rng


# ---------------------------------------------------------------------------------------------
# Sparse sampling
# ---------------------------------------------------------------------------------------------
def _choose_valid(valid: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Mark ``count`` valid pixels known, chosen uniformly without replacement (row-major order)."""
    flat_valid = np.flatnonzero(valid)  # [n_valid] row-major indices
    known_mask = np.zeros(valid.shape, dtype=bool)
    count = min(int(count), flat_valid.size)
    if count <= 0:
        return known_mask
    chosen = rng.choice(flat_valid.size, size=count, replace=False)
    known_mask.flat[flat_valid[chosen]] = True
    return known_mask


def random_ratio(valid: Any, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Known = a uniform random fraction ``ratio`` of the valid pixels.

    Exactly ``k = max(1, floor(ratio * n_valid + 0.5))`` pixels are kept (0 when no pixel is
    valid): the valid pixels are listed in row-major order and ``rng.choice(n_valid, k,
    replace=False)`` picks which of them are known.

    Args:
        valid: ``[H, W]`` bool, True where the ground truth is valid.
        ratio: fraction in (0, 1] (``"ratio:5"`` in :func:`make_mask` means 0.05).
        rng: the random generator.

    Returns:
        ``[H, W]`` bool known_mask.
    """
    valid = _check_valid(valid)
    rng = _check_rng(rng)
    ratio = float(ratio)
    if not (0.0 < ratio <= 1.0):
        raise ValueError(f"`ratio` must be in (0, 1]; got {ratio!r} (5 % is 0.05)")
    n_valid = int(valid.sum())
    if n_valid == 0:
        return np.zeros_like(valid)
    count = max(1, int(math.floor(ratio * n_valid + 0.5)))
    return _choose_valid(valid, count, rng)


def random_points(valid: Any, n: int, rng: np.random.Generator) -> np.ndarray:
    """Known = exactly ``min(n, n_valid)`` valid pixels drawn uniformly without replacement.

    This is the NYUv2 "500 points" protocol of the depth-completion literature. Same sampling rule
    as :func:`random_ratio` (row-major valid pixels, ``rng.choice(n_valid, n, replace=False)``).
    """
    valid = _check_valid(valid)
    rng = _check_rng(rng)
    if isinstance(n, bool) or int(n) != n or int(n) < 1:
        raise ValueError(f"`n` must be a positive integer; got {n!r}")
    return _choose_valid(valid, int(n), rng)


# ---------------------------------------------------------------------------------------------
# Large holes
# ---------------------------------------------------------------------------------------------
@dataclass
class _ShapeDraw:
    """One hole shape: its kind and the parameters drawn for it (before any shrinking)."""

    kind: str
    params: dict[str, Any]


def _draw_shape_params(kind: str, height: int, width: int, rng: np.random.Generator) -> _ShapeDraw:
    """Draw the parameters of one shape. The order of the ``rng`` calls is part of the protocol."""
    if kind == "strokes":
        n_vertices = int(rng.integers(4, 11))  # 4..10 vertices
        start = (rng.uniform(0, width), rng.uniform(0, height))
        thickness = rng.uniform(0.02, 0.06) * min(height, width)
        angles = rng.uniform(0.0, 2.0 * np.pi, size=n_vertices - 1)
        lengths = rng.uniform(0.05, 0.20, size=n_vertices - 1) * max(height, width)
        return _ShapeDraw(
            kind, {"start": start, "thickness": thickness, "angles": angles, "lengths": lengths}
        )
    if kind == "ellipses":
        center = (rng.uniform(0, width), rng.uniform(0, height))
        axes = (rng.uniform(0.03, 0.20) * width, rng.uniform(0.03, 0.20) * height)
        angle = rng.uniform(0.0, 180.0)
        return _ShapeDraw(kind, {"center": center, "axes": axes, "angle": angle})
    if kind == "rectangles":
        center = (rng.uniform(0, width), rng.uniform(0, height))
        size = (rng.uniform(0.05, 0.40) * width, rng.uniform(0.05, 0.40) * height)
        return _ShapeDraw(kind, {"center": center, "size": size})
    raise ValueError(f"unknown hole shape {kind!r}; expected one of {HOLE_SHAPES}")


def _rasterize(shape: _ShapeDraw, canvas: np.ndarray, scale: float) -> None:
    """Draw ``shape``, its sizes multiplied by ``scale``, into ``canvas`` (uint8, 1 = hole)."""
    p = shape.params
    if shape.kind == "strokes":
        thickness = max(1, int(round(p["thickness"] * scale)))
        x, y = p["start"]
        points = [(x, y)]
        for angle, length in zip(p["angles"], p["lengths"], strict=True):
            x = x + math.cos(angle) * length * scale
            y = y + math.sin(angle) * length * scale
            points.append((x, y))
        pts = np.round(np.asarray(points)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(canvas, [pts], isClosed=False, color=1, thickness=thickness, lineType=cv2.LINE_8)
        for px, py in pts[:, 0]:  # round joints
            cv2.circle(canvas, (int(px), int(py)), thickness // 2, color=1, thickness=-1)
    elif shape.kind == "ellipses":
        cx, cy = p["center"]
        ax = max(1, int(round(p["axes"][0] * scale)))
        ay = max(1, int(round(p["axes"][1] * scale)))
        cv2.ellipse(
            canvas,
            (int(round(cx)), int(round(cy))),
            (ax, ay),
            p["angle"],
            0,
            360,
            color=1,
            thickness=-1,
        )
    else:  # rectangles
        cx, cy = p["center"]
        half_w = p["size"][0] * scale / 2.0
        half_h = p["size"][1] * scale / 2.0
        x0, x1 = int(round(cx - half_w)), int(round(cx + half_w))
        y0, y1 = int(round(cy - half_h)), int(round(cy + half_h))
        h, w = canvas.shape
        canvas[max(0, y0) : min(h, max(y1, y0 + 1)), max(0, x0) : min(w, max(x1, x0 + 1))] = 1


def large_holes(
    valid: Any,
    coverage: float,
    rng: np.random.Generator,
    shapes: Sequence[str] = HOLE_SHAPES,
    *,
    tolerance: float = 0.01,
    max_shapes: int = 400,
) -> np.ndarray:
    """Known = valid pixels outside random large holes that cover ``coverage`` of the image.

    Holes are a union of random strokes (thick polylines), filled ellipses and axis-aligned
    rectangles. Shapes are added one at a time until the hole fraction of the *image* (all H*W
    pixels, not only the valid ones) is within ``tolerance`` of ``coverage``:

    1. draw the shape kind uniformly from ``shapes`` (``rng.integers(len(shapes))``), then its
       parameters (see ``docs/protocols.md`` for the distributions and the order of draws);
    2. rasterise it at scale 1; if the union would exceed ``coverage + tolerance``, rasterise it
       again at scale 1/2, 1/4, ... (at most 6 halvings, same centre) and drop it if it still
       overshoots;
    3. stop once the union covers at least ``coverage - tolerance`` (or after ``max_shapes``
       shapes; then the coverage is below target, which only happens for tiny images).

    Args:
        valid: ``[H, W]`` bool ground-truth validity.
        coverage: target fraction of the image that is a hole (unknown), in [0, 1).
        rng: the random generator.
        shapes: any non-empty subset of ``("strokes", "ellipses", "rectangles")``.
        tolerance: allowed absolute deviation of the achieved coverage.
        max_shapes: cap on the number of shapes drawn.

    Returns:
        ``[H, W]`` bool known_mask = ``valid & ~holes``.
    """
    valid = _check_valid(valid)
    rng = _check_rng(rng)
    coverage = float(coverage)
    if not (0.0 <= coverage < 1.0):
        raise ValueError(f"`coverage` must be in [0, 1); got {coverage!r}")
    if isinstance(shapes, str):
        shapes = (shapes,)
    shapes = tuple(shapes)
    if not shapes or any(kind not in HOLE_SHAPES for kind in shapes):
        raise ValueError(f"`shapes` must be a non-empty subset of {HOLE_SHAPES}; got {shapes!r}")
    height, width = valid.shape
    total = height * width
    low = (coverage - tolerance) * total
    high = (coverage + tolerance) * total

    holes = np.zeros((height, width), dtype=np.uint8)
    n_holes = 0
    for _ in range(max_shapes):
        if n_holes >= low:
            break
        kind = shapes[int(rng.integers(len(shapes)))]
        shape = _draw_shape_params(kind, height, width, rng)
        for halving in range(7):
            candidate = holes.copy()
            _rasterize(shape, candidate, 0.5**halving)
            n_candidate = int(np.count_nonzero(candidate))
            if n_candidate <= high:
                holes, n_holes = candidate, n_candidate
                break
    return valid & (holes == 0)


# ---------------------------------------------------------------------------------------------
# LiDAR scan lines
# ---------------------------------------------------------------------------------------------
def lidar_lines(
    valid: Any,
    rng: np.random.Generator,
    n_beams: int = 64,
    vertical_fov: tuple[float, float] = (-24.9, 2.0),
    keep_every: int = 1,
    *,
    fy: float | None = None,
    cy: float | None = None,
    fx: float | None = None,
    cx: float | None = None,
    azimuth_resolution: float = 0.09,
    elevation_jitter: float = 0.0,
    dropout: float = 0.0,
) -> np.ndarray:
    """Known = valid pixels hit by a simulated spinning LiDAR (scan-line pattern).

    Beam ``b`` (0..n_beams-1) has elevation ``theta_b = top - b * (top - bottom) / (n_beams - 1)``
    degrees (``vertical_fov = (bottom, top)``, default the Velodyne HDL-64E's -24.9..+2.0).
    Only beams with ``b % keep_every == 0`` are kept (``keep_every=4``: 64 -> 16 lines). The LiDAR
    sits at the camera centre with the camera looking along its horizontal plane, so a return at
    azimuth ``phi`` (relative to the optical axis) and elevation ``theta`` projects to::

        u = cx + fx * tan(phi)
        v = cy - fy * tan(theta) / cos(phi)       (curved lines, as in real projected scans)

    Azimuths are ``phi_j = phase + j * azimuth_resolution`` (degrees) for every ``j`` with
    ``|phi_j| < 89``, ``phase = rng.uniform(0, azimuth_resolution)``; then (only if > 0)
    ``elevation_jitter`` adds ``rng.normal(0, elevation_jitter, n_kept_beams)`` degrees per beam,
    and ``dropout`` removes each projected return with probability ``dropout``
    (``rng.random(n) < dropout``). ``(u, v)`` are rounded to the nearest pixel; returns outside the
    image are discarded.

    Default camera: ``fy`` and ``cy`` are chosen so that the beams span the image height exactly
    (top beam on row 0, bottom beam on row H-1 at the image centre column), ``fx = fy``,
    ``cx = (W - 1) / 2``. Pass the dataset's intrinsics (e.g. KITTI ``fy=721.5, cy=172.9``) to get
    the real geometry, where the lowest beams fall below the image.

    Returns:
        ``[H, W]`` bool known_mask.
    """
    valid = _check_valid(valid)
    rng = _check_rng(rng)
    if isinstance(n_beams, bool) or int(n_beams) != n_beams or n_beams < 1:
        raise ValueError(f"`n_beams` must be a positive integer; got {n_beams!r}")
    if int(keep_every) != keep_every or keep_every < 1:
        raise ValueError(f"`keep_every` must be a positive integer; got {keep_every!r}")
    bottom, top = (float(v) for v in vertical_fov)
    if not (-89.0 < bottom < top < 89.0):
        raise ValueError(
            f"`vertical_fov` must be (bottom, top) degrees with bottom < top; got {vertical_fov!r}"
        )
    if azimuth_resolution <= 0:
        raise ValueError(f"`azimuth_resolution` must be > 0 degrees; got {azimuth_resolution!r}")
    if not (0.0 <= dropout < 1.0):
        raise ValueError(f"`dropout` must be in [0, 1); got {dropout!r}")
    height, width = valid.shape
    tan_top, tan_bottom = math.tan(math.radians(top)), math.tan(math.radians(bottom))
    if fy is None:
        fy = (height - 1) / max(tan_top - tan_bottom, 1e-9) if height > 1 else 1.0
    if cy is None:
        cy = fy * tan_top
    fx = fy if fx is None else fx
    cx = (width - 1) / 2.0 if cx is None else cx

    n_beams = int(n_beams)
    if n_beams == 1:
        elevations = np.array([top])
    else:
        elevations = top - np.arange(n_beams) * (top - bottom) / (n_beams - 1)
    elevations = elevations[:: int(keep_every)]  # [n_kept]

    phase = rng.uniform(0.0, azimuth_resolution)
    n_side = int(math.ceil(89.0 / azimuth_resolution)) + 1
    azimuths = phase + np.arange(-n_side, n_side + 1) * azimuth_resolution
    azimuths = azimuths[np.abs(azimuths) < 89.0]
    phi = np.radians(azimuths)  # [n_az]
    u = cx + fx * np.tan(phi)
    in_width = (u > -0.5) & (u < width - 0.5)
    phi, u = phi[in_width], u[in_width]

    if elevation_jitter > 0:
        elevations = elevations + rng.normal(0.0, elevation_jitter, size=elevations.size)
    theta = np.radians(elevations)  # [n_kept]
    v = cy - fy * np.tan(theta)[:, None] / np.cos(phi)[None, :]  # [n_kept, n_az]
    cols = np.broadcast_to(np.round(u).astype(np.int64), v.shape).ravel()
    rows = np.round(v).astype(np.int64).ravel()
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    if dropout > 0:
        inside &= rng.random(rows.size) >= dropout
    known_mask = np.zeros((height, width), dtype=bool)
    known_mask[rows[inside], cols[inside]] = True
    return known_mask & valid


# ---------------------------------------------------------------------------------------------
# Border / outpainting, sensor holes
# ---------------------------------------------------------------------------------------------
def border(
    valid: Any,
    rng: np.random.Generator,
    width_fraction: float | tuple[float, float] = (0.1, 0.3),
    sides: str | Iterable[str] = "random",
) -> np.ndarray:
    """Known = valid pixels inside a central window; a border band is unknown (outpainting).

    1. Sides: ``"all"`` = top, bottom, left, right; ``"random"`` = each of the four sides (in that
       order) is included when ``rng.random() < 0.5``, redrawn until at least one is included; or an
       explicit iterable of side names.
    2. Width per included side (in that order): a fraction ``f`` of the image height (top/bottom)
       or width (left/right), ``f = width_fraction`` if a number, else
       ``rng.uniform(lo, hi)``; the band is ``round(f * H)`` rows (or ``round(f * W)`` columns).

    Returns:
        ``[H, W]`` bool known_mask.
    """
    valid = _check_valid(valid)
    rng = _check_rng(rng)
    if isinstance(width_fraction, (int, float)):
        low = high = float(width_fraction)
    else:
        low, high = (float(v) for v in width_fraction)
    if not (0.0 <= low <= high < 0.5):
        raise ValueError(
            f"`width_fraction` must be a number or (lo, hi) with 0 <= lo <= hi < 0.5; got {width_fraction!r}"
        )
    if sides == "all":
        chosen = list(_SIDES)
    elif sides == "random":
        chosen = []
        while not chosen:
            chosen = [side for side in _SIDES if rng.random() < 0.5]
    else:
        chosen = [sides] if isinstance(sides, str) else list(sides)
        bad = [side for side in chosen if side not in _SIDES]
        if bad or not chosen:
            raise ValueError(f"`sides` must be 'all', 'random' or a subset of {_SIDES}; got {sides!r}")
    height, width = valid.shape
    known_mask = valid.copy()
    for side in _SIDES:
        if side not in chosen:
            continue
        fraction = low if low == high else float(rng.uniform(low, high))
        size = height if side in ("top", "bottom") else width
        band = int(round(fraction * size))
        if band <= 0:
            continue
        if side == "top":
            known_mask[:band] = False
        elif side == "bottom":
            known_mask[height - band :] = False
        elif side == "left":
            known_mask[:, :band] = False
        else:
            known_mask[:, width - band :] = False
    return known_mask


def sensor_holes(valid: Any) -> np.ndarray:
    """Known = the sensor's own valid pixels ("real holes" protocol).

    Pass the validity of the *raw* sensor depth as ``valid`` and score against a separately
    completed ground truth (e.g. NYUv2 raw vs in-painted depth). Deterministic: no ``rng``.
    """
    return _check_valid(valid).copy()


# ---------------------------------------------------------------------------------------------
# Sensor-like patterns: keypoints, depth-range holes, object blobs, LiDAR scan lines
# ---------------------------------------------------------------------------------------------
KITTI_LIDAR_OFFSET = (0.0, -0.08, -0.27)
"""Velodyne centre in KITTI camera-2 coordinates (metres; x right, y down, z forward): 0.08 m
above and 0.27 m behind the camera (the KITTI sensor setup), the origin of the elevation angles
of :func:`scan_line_ids`."""


def keypoints(rgb: Any, valid: Any, n: int, rng: np.random.Generator, detector: str = "orb") -> np.ndarray:
    """Known = up to ``n`` ORB or SIFT keypoints of the image at valid pixels (SfM-like sparsity).

    Detection on ``cv2.cvtColor(rgb, COLOR_RGB2GRAY)``: ORB ``cv2.ORB_create(nfeatures=max(4n,
    500))``, SIFT ``cv2.SIFT_create()`` (OpenCV defaults otherwise). Keypoint ``(x, y)`` ->
    pixel ``(round(y), round(x))`` clipped to the image; pixels not valid are dropped, duplicates
    removed. If more than ``n`` pixels remain, ``n`` are chosen with ``rng.choice(count, n,
    replace=False)`` over the unique pixels in row-major order.

    Args:
        rgb: ``uint8 [H, W, 3]``.
        valid: ``[H, W]`` bool.
        n: number of keypoints (>= 1).
        rng: the generator.
        detector: ``"orb"`` or ``"sift"``.
    """
    valid = _check_valid(valid)
    rng = _check_rng(rng)
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[:2] != valid.shape or image.shape[2] < 3:
        raise ValueError(f"`rgb` must be [H, W, 3] matching valid {valid.shape}; got shape {image.shape}")
    if int(n) < 1:
        raise ValueError(f"`n` (keypoints) must be >= 1; got {n!r}")
    if detector == "orb":
        finder = cv2.ORB_create(nfeatures=max(4 * int(n), 500))
    elif detector == "sift":
        finder = cv2.SIFT_create()
    else:
        raise ValueError(f"`detector` must be 'orb' or 'sift'; got {detector!r}")
    gray = cv2.cvtColor(np.ascontiguousarray(image[..., :3]).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    found = finder.detect(gray, None)
    height, width = valid.shape
    known_mask = np.zeros(valid.shape, dtype=bool)
    if not found:
        return known_mask
    points = np.array([kp.pt for kp in found], dtype=np.float64)  # [K, 2] (x, y)
    cols = np.clip(np.floor(points[:, 0] + 0.5).astype(np.int64), 0, width - 1)
    rows = np.clip(np.floor(points[:, 1] + 0.5).astype(np.int64), 0, height - 1)
    flat = np.unique(rows * width + cols)  # sorted = row-major
    flat = flat[valid.flat[flat]]
    if flat.size > int(n):
        flat = flat[np.sort(rng.choice(flat.size, size=int(n), replace=False))]
    known_mask.flat[flat] = True
    return known_mask


def depth_range_hole(depth: Any, valid: Any, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Remove one depth interval holding ``fraction`` of the valid pixels (a range the sensor misses).

    ``q0 = rng.uniform(0, 1 - fraction)``; ``lo, hi = np.quantile(depth[valid], [q0, q0 +
    fraction])`` (numpy's default linear interpolation); unknown = valid pixels with
    ``lo <= depth <= hi``. Known = the other valid pixels.
    """
    valid = _check_valid(valid)
    rng = _check_rng(rng)
    values = np.asarray(depth, dtype=np.float64)
    if values.shape != valid.shape:
        raise ValueError(f"`depth` must match valid {valid.shape}; got shape {values.shape}")
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"`fraction` must be in (0, 1); got {fraction!r}")
    q0 = float(rng.uniform(0.0, 1.0 - float(fraction)))
    if not valid.any():
        return np.zeros(valid.shape, dtype=bool)
    low, high = np.quantile(values[valid], [q0, q0 + float(fraction)])
    removed = valid & (values >= low) & (values <= high)
    return valid & ~removed


def object_blob(valid: Any, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """One object-sized filled elliptical hole of area ``fraction`` of the image.

    Draws in order: ``aspect = exp(U(ln 0.5, ln 2))``, rotation ``U(0, 180)`` degrees, centre
    ``(U(0.25, 0.75)·W, U(0.25, 0.75)·H)``. Semi-axes ``a = sqrt(fraction·H·W·aspect/π)`` (x) and
    ``b = fraction·H·W/(π·a)`` (y), rounded to integers (at least 1), rasterised with
    ``cv2.ellipse`` (filled, 8-connected, centre rounded). Known = valid outside the ellipse.
    """
    valid = _check_valid(valid)
    rng = _check_rng(rng)
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"`fraction` must be in (0, 1); got {fraction!r}")
    height, width = valid.shape
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    angle = float(rng.uniform(0.0, 180.0))
    cx, cy = float(rng.uniform(0.25, 0.75)) * width, float(rng.uniform(0.25, 0.75)) * height
    area = float(fraction) * height * width
    semi_x = math.sqrt(area * aspect / math.pi)
    semi_y = area / (math.pi * semi_x)
    canvas = np.zeros(valid.shape, dtype=np.uint8)
    cv2.ellipse(
        canvas,
        (int(round(cx)), int(round(cy))),
        (max(1, int(round(semi_x))), max(1, int(round(semi_y)))),
        angle,
        0,
        360,
        color=1,
        thickness=-1,
        lineType=cv2.LINE_8,
    )
    return valid & (canvas == 0)


def scan_line_ids(
    depth: Any,
    intrinsics: Any,
    *,
    lidar_offset: Sequence[float] = KITTI_LIDAR_OFFSET,
    bin_deg: float = 0.02,
    smooth_deg: float = 0.04,
    min_gap_deg: float = 0.2,
) -> np.ndarray:
    """Scan-line index of every LiDAR pixel of a projected sparse depth map (-1 = no point).

    A projected map (KITTI ``velodyne_raw``) does not store the laser of a point; this derives it
    from the elevation angle seen from the LiDAR centre:

    1. back-project each pixel ``(u, v)`` with depth ``z > 0``: ``x = (u - cx)·z/fx``,
       ``y = (v - cy)·z/fy``; subtract ``lidar_offset`` (the LiDAR centre in camera coordinates);
       elevation ``e = degrees(atan2(-y, hypot(x, z)))``;
    2. histogram ``e`` in bins of ``bin_deg`` starting at ``min(e) - 1``; smooth with a Gaussian of
       sigma ``smooth_deg`` (kernel truncated at 3 sigma, ``np.convolve(mode="same")``);
    3. peaks = bins strictly higher than the next bin and at least as high as the previous one;
       greedy non-maximum suppression (highest first) keeps peaks ``>= min_gap_deg`` apart;
    4. line ``i`` = the ``i``-th peak from the top (highest elevation = 0); every point goes to the
       line whose peak is nearest in elevation (boundaries at the midpoints).

    Approximate: a real HDL-64E laser's apparent elevation also varies with range (its mount
    offset), so near points can land on a neighbouring line (``docs/protocols.md``).
    """
    values = np.asarray(depth, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"`depth` must be [H, W]; got shape {values.shape}")
    K = np.asarray(intrinsics, dtype=np.float64)  # noqa: N806
    if K.shape != (3, 3):
        raise ValueError(f"`intrinsics` must be a 3x3 matrix; got shape {K.shape}")
    ids = np.full(values.shape, -1, dtype=np.int64)
    rows, cols = np.nonzero(np.isfinite(values) & (values > 0))
    if rows.size == 0:
        return ids
    z = values[rows, cols]
    x = (cols - K[0, 2]) * z / K[0, 0] - lidar_offset[0]
    y = (rows - K[1, 2]) * z / K[1, 1] - lidar_offset[1]
    elevation = np.degrees(np.arctan2(-y, np.hypot(x, z - lidar_offset[2])))
    start = elevation.min() - 1.0
    bins = np.floor((elevation - start) / bin_deg).astype(np.int64)
    histogram = np.bincount(bins, minlength=int(bins.max()) + 2).astype(np.float64)
    reach = max(1, int(3 * smooth_deg / bin_deg))
    offsets = np.arange(-reach, reach + 1) * bin_deg
    smooth = np.convolve(histogram, np.exp(-0.5 * (offsets / smooth_deg) ** 2), mode="same")
    inner = smooth[1:-1]
    peaks = np.flatnonzero((inner >= smooth[:-2]) & (inner > smooth[2:]) & (inner > 0)) + 1
    kept: list[int] = []
    for peak in peaks[np.argsort(-smooth[peaks], kind="stable")]:
        if all(abs(int(peak) - other) * bin_deg >= min_gap_deg for other in kept):
            kept.append(int(peak))
    centres = np.sort(start + (np.array(kept, dtype=np.float64) + 0.5) * bin_deg)[::-1]  # top first
    boundaries = (centres[1:] + centres[:-1]) / 2.0  # descending
    ids[rows, cols] = np.searchsorted(-boundaries, -elevation)
    return ids


def scan_lines(
    depth: Any, intrinsics: Any, n_lines: int, source_lines: int = 64, **kwargs: Any
) -> np.ndarray:
    """Known = the pixels of every ``source_lines // n_lines``-th scan line (64 -> 32/16/8 lines).

    Lines from :func:`scan_line_ids` (``kwargs`` go there); line ``i`` is kept when
    ``i % (source_lines // n_lines) == 0``. ``n_lines`` must divide ``source_lines``.
    """
    n_lines, source_lines = int(n_lines), int(source_lines)
    if n_lines < 1 or source_lines % n_lines:
        raise ValueError(f"`n_lines` must divide {source_lines}; got {n_lines!r}")
    ids = scan_line_ids(depth, intrinsics, **kwargs)
    return (ids >= 0) & (ids % (source_lines // n_lines) == 0)


# ---------------------------------------------------------------------------------------------
# Protocol strings
# ---------------------------------------------------------------------------------------------
_PROTOCOL_KINDS = (
    "ratio",
    "points",
    "holes",
    "lidar",
    "border",
    "sensor",
    "orb",
    "sift",
    "range",
    "blob",
    "lines",
)


def _parse_value(text: str, protocol: str) -> float | tuple[float, float]:
    text = text.strip()
    try:
        if "-" in text[1:]:
            split_at = text.index("-", 1)
            low, high = float(text[:split_at]), float(text[split_at + 1 :])
            if low > high:
                raise ValueError
            return (low, high)
        return float(text)
    except ValueError:
        raise ValueError(
            f"bad parameter {text!r} in mask protocol {protocol!r}: expected a number or 'lo-hi'"
        ) from None


def parse_protocol(protocol: str) -> tuple[str, list[float | tuple[float, float]]]:
    """Split ``"kind:p1:p2"`` into ``(kind, [p1, p2])``; a parameter is a number or ``(lo, hi)``."""
    if not isinstance(protocol, str) or not protocol.strip():
        raise ValueError(f"`protocol` must be a non-empty string such as 'ratio:5'; got {protocol!r}")
    kind, *params = protocol.strip().lower().split(":")
    if kind not in _PROTOCOL_KINDS:
        raise ValueError(
            f"unknown mask protocol {protocol!r}; expected one of "
            "'ratio:K' (percent), 'points:N', 'holes:C', 'lidar:B[:keep_every]', 'border:F', "
            "'sensor', 'orb:N', 'sift:N', 'range:F', 'blob:F', 'lines:N'"
        )
    expected = {
        "ratio": (1, 1),
        "points": (1, 1),
        "holes": (1, 1),
        "lidar": (0, 2),
        "border": (0, 1),
        "sensor": (0, 0),
        "orb": (1, 1),
        "sift": (1, 1),
        "range": (1, 1),
        "blob": (1, 1),
        "lines": (1, 1),
    }[kind]
    if not (expected[0] <= len(params) <= expected[1]):
        raise ValueError(f"mask protocol {protocol!r} takes {expected[0]}..{expected[1]} parameters")
    return kind, [_parse_value(p, protocol) for p in params]


def _resolve(value: float | tuple[float, float], rng: np.random.Generator, integer: bool) -> float:
    if isinstance(value, tuple):
        if integer:
            return int(rng.integers(int(value[0]), int(value[1]) + 1))
        return float(rng.uniform(value[0], value[1]))
    return int(value) if integer else float(value)


def protocol_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """Generator for one (sample, protocol) pair: same masks for every method and run.

    ``np.random.default_rng([seed, k1, k2, ...])`` where a string key is replaced by
    ``zlib.crc32(key.encode("utf-8"))``. The evaluation runner uses
    ``keys = (sample_id, protocol)``.
    """
    entropy = [int(seed)]
    for key in keys:
        entropy.append(zlib.crc32(key.encode("utf-8")) if isinstance(key, str) else int(key))
    return np.random.default_rng(entropy)


def make_mask(
    protocol: str,
    valid: Any,
    seed: int | np.random.Generator,
    *,
    rgb: Any = None,
    depth: Any = None,
    intrinsics: Any = None,
) -> np.ndarray:
    """Known mask for a protocol string (see the module docstring), seeded by ``seed``.

    Args:
        protocol: ``"ratio:5"``, ``"points:500"``, ``"holes:0.3"``, ``"lidar:64"``,
            ``"lidar:64:4"``, ``"border:0.2"``, ``"sensor"``, ``"orb:500"``, ``"sift:500"``,
            ``"range:0.3"``, ``"blob:0.1"``, ``"lines:16"``; numeric parameters may be ranges.
        valid: ``[H, W]`` bool ground-truth validity.
        seed: an int (-> ``np.random.default_rng(seed)``) or a ``np.random.Generator`` (used as is).
        rgb: ``uint8 [H, W, 3]`` image, for ``orb``/``sift``.
        depth: ``[H, W]`` depth (metres), for ``range`` (the GT) and ``lines`` (the LiDAR map).
        intrinsics: ``[3, 3]`` camera matrix, for ``lines``.

    Returns:
        ``[H, W]`` bool known_mask.
    """
    kind, params = parse_protocol(protocol)
    if isinstance(seed, np.random.Generator):
        rng = seed
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        rng = np.random.default_rng(int(seed))
    else:
        raise TypeError(f"`seed` must be an int or a numpy.random.Generator; got {type(seed).__name__}")
    if kind == "ratio":
        percent = _resolve(params[0], rng, integer=False)
        return random_ratio(valid, percent / 100.0, rng)
    if kind == "points":
        return random_points(valid, _resolve(params[0], rng, integer=True), rng)
    if kind == "holes":
        return large_holes(valid, _resolve(params[0], rng, integer=False), rng)
    if kind == "lidar":
        n_beams = _resolve(params[0], rng, integer=True) if params else 64
        keep_every = _resolve(params[1], rng, integer=True) if len(params) > 1 else 1
        return lidar_lines(valid, rng, n_beams=n_beams, keep_every=keep_every)
    if kind == "border":
        if not params:
            return border(valid, rng)
        if isinstance(params[0], tuple):
            return border(valid, rng, width_fraction=params[0], sides="random")
        return border(valid, rng, width_fraction=params[0], sides="all")
    missing = [
        name
        for name, value in (("rgb", rgb), ("depth", depth), ("intrinsics", intrinsics))
        if name in protocol_needs(protocol) and value is None
    ]
    if missing:
        raise ValueError(f"mask protocol {protocol!r} needs {' and '.join(missing)}")
    if kind in ("orb", "sift"):
        return keypoints(rgb, valid, _resolve(params[0], rng, integer=True), rng, detector=kind)
    if kind == "range":
        return depth_range_hole(depth, valid, _resolve(params[0], rng, integer=False), rng)
    if kind == "blob":
        return object_blob(valid, _resolve(params[0], rng, integer=False), rng)
    if kind == "lines":
        return scan_lines(depth, intrinsics, _resolve(params[0], rng, integer=True)) & _check_valid(valid)
    return sensor_holes(valid)


def protocol_needs(protocol: str) -> tuple[str, ...]:
    """What :func:`make_mask` needs besides ``valid`` for ``protocol``: ``rgb``, ``depth``, ``intrinsics``."""
    kind, _ = parse_protocol(protocol)
    return {"orb": ("rgb",), "sift": ("rgb",), "range": ("depth",), "lines": ("depth", "intrinsics")}.get(
        kind, ()
    )


class MaskMixture:
    """A weighted mixture of mask protocols, for training.

    Args:
        components: ``{protocol string: weight}``; weights must be >= 0 with a positive sum and are
            normalised. Example: ``{"ratio:0.5-10": 0.3, "holes:0.2-0.7": 0.4, "lidar:64:1-4": 0.1,
            "border:0.1-0.3": 0.1, "points:100-2000": 0.1}``.
        min_known: resample (up to 10 times, then fall back to ``random_points(valid,
            min_known)``) when a drawn mask has fewer known pixels than this.

    ``sample(valid, rng)`` draws the component with ``rng.choice(n, p=weights)`` (components in the
    dict's order), then calls :func:`make_mask(component, valid, rng)`.
    """

    def __init__(self, components: Mapping[str, float], min_known: int = 1) -> None:
        if not isinstance(components, Mapping) or not components:
            raise ValueError(
                f"`components` must be a non-empty {{protocol: weight}} dict; got {components!r}"
            )
        names = list(components)
        weights = np.asarray([float(components[name]) for name in names], dtype=np.float64)
        if np.any(weights < 0) or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise ValueError(f"mask mixture weights must be >= 0 with a positive sum; got {dict(components)}")
        for name in names:
            parse_protocol(name)
        self.protocols = names
        self.weights = weights / weights.sum()
        self.min_known = int(min_known)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MaskMixture:
        """Build from ``{"components": {...}, "min_known": 1}`` or ``{protocol: weight}``."""
        if "components" in config:
            return cls(config["components"], min_known=int(config.get("min_known", 1)))
        return cls(config)

    def sample(self, valid: Any, rng: np.random.Generator, return_protocol: bool = False) -> Any:
        """Draw one known_mask ``[H, W]`` (and the protocol used if ``return_protocol``)."""
        valid = _check_valid(valid)
        rng = _check_rng(rng)
        needed = min(self.min_known, int(valid.sum()))
        for _ in range(10):
            protocol = self.protocols[int(rng.choice(len(self.protocols), p=self.weights))]
            known_mask = make_mask(protocol, valid, rng)
            if int(known_mask.sum()) >= needed:
                return (known_mask, protocol) if return_protocol else known_mask
        protocol = f"points:{max(needed, 1)}"
        known_mask = random_points(valid, max(needed, 1), rng)
        return (known_mask, protocol) if return_protocol else known_mask

    def __repr__(self) -> str:
        parts = ", ".join(f"{p!r}: {w:.3f}" for p, w in zip(self.protocols, self.weights, strict=True))
        return f"MaskMixture({{{parts}}}, min_known={self.min_known})"


def sparsify(depth: Any, protocol: str, seed: int | np.random.Generator = 0) -> tuple[np.ndarray, np.ndarray]:
    """Make sparse input from a dense depth map, as depth-completion tutorials do first.

    The kept pixels are ``make_mask(protocol, valid, seed)`` with ``valid`` = the pixels of
    ``depth`` that are finite and > 0 (CLI: ``depthlab complete ... --keep points:500 --seed 0``).

    Args:
        depth: ``[H, W]`` dense (or semi-dense) depth, any units.
        protocol: ``"points:500"``, ``"ratio:5"``, ``"holes:0.3"``, ``"lidar:64"``, ... (see the
            module docstring).
        seed: int or ``np.random.Generator``; the same seed keeps the same pixels.

    Returns:
        ``(sparse_depth, known_mask)``: float32 ``[H, W]`` with 0 outside the kept pixels, and
        the bool ``[H, W]`` kept pixels.

    Raises:
        ValueError: bad protocol, or ``depth`` has no valid pixel to keep.
    """
    array = np.asarray(depth, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"`depth` must be a [H, W] map; got shape {array.shape}")
    valid = np.isfinite(array) & (array > 0)
    if not valid.any():
        raise ValueError(f"cannot keep {protocol!r} of a depth map without valid (> 0) pixels")
    known = make_mask(protocol, valid, seed)
    if not known.any():
        raise ValueError(f"mask protocol {protocol!r} kept no pixel of the {int(valid.sum())} valid ones")
    return np.where(known, array, 0.0).astype(np.float32), known
