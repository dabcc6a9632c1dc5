"""Classical depth completion: ``nearest``, ``linear``, ``guided`` and ``lidar``.

Every method takes ``depth`` ``[H, W]`` (any units) and ``known_mask`` ``[H, W]`` (bool, True =
known; None -> finite and > 0), returns float32 ``[H, W]`` depth in the input units, and keeps
the known pixels exactly. Only numpy, scipy and OpenCV are used (no torch). Run them by name with
:func:`depthlab.complete` (``method="guided"``, ...): they are registered in
:mod:`depthlab.completion`, the one method registry.

* :func:`nearest` copies the value of the closest known pixel (Euclidean distance transform).
* :func:`linear` interpolates linearly over a Delaunay triangulation of the known pixels
  (``scipy.interpolate.griddata``); pixels outside the convex hull take the nearest known value.
* :func:`guided` is an RGB-guided weighted least-squares fill in the spirit of the colorization
  fill of Levin et al. (2004) that produced the dense NYU Depth v2 maps: neighbouring pixels of
  similar colour are asked to have similar depth. It is solved coarse to fine on an image pyramid,
  which also makes it well posed for isolated sparse points; every level above the coarsest is
  solved matrix-free (array shifts, float32), so it needs about 85 bytes per pixel.

Each method's peak memory per pixel is measured by ``benchmarks/method_memory.py`` and kept in
:data:`BYTES_PER_PIXEL`; :func:`check_memory` (called by :func:`complete_classical` and
:func:`depthlab.complete`) refuses an input that does not fit before any work.
* :func:`lidar` is the morphological fill of Ku et al. (2018), "In Defense of Classical Image
  Processing: Fast Depth Completion on the CPU", for LiDAR-like input.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from depthlab import preprocessing
from depthlab.inputs import check_completion_inputs, resolve_known_mask, to_depth_array, to_rgb_uint8

__all__ = [
    "BYTES_PER_PIXEL",
    "InsufficientMemoryError",
    "nearest",
    "linear",
    "guided",
    "lidar",
    "memory_estimate",
    "available_memory",
    "check_memory",
]

logger = logging.getLogger(__name__)


def _prepare(depth: Any, known_mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """Standardise ``depth``/``known_mask`` and check them; unknown pixels are zeroed."""
    depth = to_depth_array(depth)
    known = resolve_known_mask(known_mask, depth)
    check_completion_inputs(None, depth, known, allow_all_known=True)
    depth = np.where(known, depth, 0.0).astype(np.float32)
    return depth, known


def nearest(depth: Any, known_mask: Any = None) -> np.ndarray:
    """Fill each unknown pixel with the value of the nearest known pixel.

    Args:
        depth: ``[H, W]`` depth (any units); values at unknown pixels are ignored.
        known_mask: ``[H, W]`` bool, True = known; None -> ``isfinite(depth) & (depth > 0)``.

    Returns:
        float32 ``[H, W]`` depth, equal to ``depth`` at known pixels.
    """
    depth, known = _prepare(depth, known_mask)
    return _nearest(depth, known)


def _nearest(depth: np.ndarray, known: np.ndarray) -> np.ndarray:
    return preprocessing.nearest_fill(depth, known, exact=False).astype(np.float32)


def linear(depth: Any, known_mask: Any = None, *, exact: bool = False) -> np.ndarray:
    """Linear interpolation over a Delaunay triangulation of the known pixels.

    Pixels outside the convex hull of the known pixels take the value of the nearest known pixel.

    Args:
        depth: ``[H, W]`` depth (any units).
        known_mask: ``[H, W]`` bool, True = known; None -> ``isfinite(depth) & (depth > 0)``.
        exact: triangulate every known pixel. The default triangulates only the known pixels that
            touch an unknown one (the full set when the input is sparse), which gives the same
            kind of fill inside holes and is much faster for dense input.

    Returns:
        float32 ``[H, W]`` depth, equal to ``depth`` at known pixels.
    """
    depth, known = _prepare(depth, known_mask)
    return _linear(depth, known, exact=exact)


def _linear(depth: np.ndarray, known: np.ndarray, *, exact: bool = False) -> np.ndarray:
    out = preprocessing.linear_fill(depth, known, fill_value=np.nan, exact=exact)
    outside = ~np.isfinite(out)  # outside the hull of the known pixels (or no triangulation)
    if outside.any():
        out[outside] = _nearest(depth, known)[outside]
    return out


# ----------------------------------------------------------------------------------------------
# guided: colour-weighted least squares, coarse to fine
# ----------------------------------------------------------------------------------------------


def _run_slices(shape: tuple[int, int], dy: int, dx: int, length: int) -> list[tuple[slice, slice]]:
    """Slices of the k-th pixel (k = 0..length-1) of every run of ``length`` pixels along (dy, dx).

    A run starts at pixel (r, c) and visits (r + k dy, c + k dx). Each returned slice pair
    indexes an ``[h, w]`` array and has the shape of the run-start grid; empty when the image is
    too small for such a run.
    """
    h, w = shape
    rows = max(h - (length - 1) * dy, 0)
    cols = max(w - (length - 1) * abs(dx), 0)
    col0 = 0 if dx >= 0 else length - 1
    return [(slice(k * dy, k * dy + rows), slice(col0 + k * dx, col0 + k * dx + cols)) for k in range(length)]


# neighbour directions (dy, dx) in the order of _edge_weights: horizontal, vertical, diagonal, anti-diagonal
_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _edge_weights(rgb: np.ndarray, sigma_color: float | None, dtype: type = np.float64) -> list[np.ndarray]:
    """Affinities of horizontal, vertical and the two diagonal neighbour pairs.

    ``rgb`` is ``[h, w, 3]``: float32 in [0, 1] or uint8 (divided by 255). Weight =
    exp(-|dI|^2 / (2 sigma^2)) + 1e-4, halved for the diagonals (sqrt(2) apart), with sigma taken
    from the image (root mean square of the horizontal and vertical colour differences) when
    None. Shapes ``[h, w-1]``, ``[h-1, w]``, ``[h-1, w-1]``, ``[h-1, w-1]``, ``dtype``. Computed
    from contiguous float32 colour planes, one direction at a time.
    """
    scale = np.float32(1.0 / 255.0) if rgb.dtype == np.uint8 else np.float32(1.0)
    planes = []  # contiguous float32 colour planes: strided channel views are slow to read
    for channel in range(3):
        plane = rgb[..., channel].astype(np.float32)
        plane *= scale
        planes.append(plane)
    squared = []
    for dy, dx in _DIRECTIONS:
        s0, s1 = _run_slices(rgb.shape[:2], dy, dx, 2)
        total = np.zeros((s0[0].stop - s0[0].start, s0[1].stop - s0[1].start), np.float32)
        diff = np.empty_like(total)
        for plane in planes:
            np.subtract(plane[s0], plane[s1], out=diff)
            diff *= diff
            total += diff
        del diff
        squared.append(total)
    del planes
    if sigma_color is None:
        count = squared[0].size + squared[1].size
        mean_sq = float(squared[0].sum(dtype=np.float64) + squared[1].sum(dtype=np.float64)) / max(count, 1)
        sigma_sq = max(mean_sq, 1e-6)
    else:
        sigma_sq = float(sigma_color) ** 2
    weights = []
    for total, scale in zip(squared, (1.0, 1.0, 0.5, 0.5), strict=True):
        total *= np.float32(-1.0 / (2.0 * sigma_sq))
        np.exp(total, out=total)
        total += np.float32(1e-4)
        if scale != 1.0:
            total *= np.float32(scale)
        weights.append(total.astype(dtype, copy=False))
    squared.clear()
    return weights


def _laplacian(rgb: np.ndarray, sigma_color: float | None) -> sp.csr_matrix:
    """Weighted graph Laplacian ``[h*w, h*w]`` of the 8-neighbour pixel graph."""
    h, w = rgb.shape[:2]
    index = np.arange(h * w).reshape(h, w)
    wh, wv, wd, wa = _edge_weights(rgb, sigma_color)
    pairs = (
        (index[:, 1:], index[:, :-1], wh),
        (index[1:, :], index[:-1, :], wv),
        (index[1:, 1:], index[:-1, :-1], wd),
        (index[1:, :-1], index[:-1, 1:], wa),
    )
    a = np.concatenate([p[0].ravel() for p in pairs])
    b = np.concatenate([p[1].ravel() for p in pairs])
    weight = np.concatenate([p[2].ravel() for p in pairs])
    n = h * w
    adjacency = sp.coo_matrix(
        (np.concatenate([weight, weight]), (np.concatenate([a, b]), np.concatenate([b, a]))),
        shape=(n, n),
    ).tocsr()
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    return (sp.diags(degree) - adjacency).tocsr()


def _curvature_operator(rgb: np.ndarray, sigma_color: float | None) -> sp.csr_matrix:
    """Colour-weighted second-difference energy ``D^T T D`` ``[h*w, h*w]``.

    One row of ``D`` per run of three neighbouring pixels (a, b, c) along rows, columns and both
    diagonals: ``x_a - 2 x_b + x_c``. Its weight is the smaller affinity of the two steps, so
    planes cost nothing and the curvature penalty switches off across colour edges.
    """
    h, w = rgb.shape[:2]
    index = np.arange(h * w).reshape(h, w)
    wh, wv, wd, wa = _edge_weights(rgb, sigma_color)  # halved diagonals
    triplets = (
        (index[:, :-2], index[:, 1:-1], index[:, 2:], np.minimum(wh[:, :-1], wh[:, 1:])),
        (index[:-2, :], index[1:-1, :], index[2:, :], np.minimum(wv[:-1, :], wv[1:, :])),
        (
            index[:-2, :-2],
            index[1:-1, 1:-1],
            index[2:, 2:],
            0.5 * np.minimum(wd[:-1, :-1], wd[1:, 1:]),
        ),
        (
            index[:-2, 2:],
            index[1:-1, 1:-1],
            index[2:, :-2],
            0.5 * np.minimum(wa[:-1, 1:], wa[1:, :-1]),
        ),
    )
    a = np.concatenate([t[0].ravel() for t in triplets])
    b = np.concatenate([t[1].ravel() for t in triplets])
    c = np.concatenate([t[2].ravel() for t in triplets])
    weight = np.concatenate([t[3].ravel() for t in triplets])
    m = a.size
    row = np.repeat(np.arange(m), 3)
    col = np.stack([a, b, c], axis=1).ravel()
    coef = np.tile(np.array([1.0, -2.0, 1.0]), m)
    second = sp.csr_matrix((coef, (row, col)), shape=(m, h * w))
    return (second.T @ sp.diags(weight) @ second).tocsr()


class _GridOperator:
    """Matrix-free system of one pyramid level: ``curvature + first_order_weight * membrane + prior``.

    The same energy as :func:`_curvature_operator` and :func:`_laplacian` (8-neighbour graph,
    colour affinities), applied with array shifts in float32 instead of a sparse matrix, so a
    level needs about 60 bytes per pixel (edge and curvature weights, 8 arrays) plus the
    conjugate-gradient vectors. Rows and columns of known pixels are removed (Dirichlet).
    """

    def __init__(
        self,
        rgb: np.ndarray,
        known: np.ndarray,
        *,
        sigma_color: float | None,
        first_order_weight: float,
        prior_weight: float,
    ) -> None:
        self.shape = known.shape
        self.unknown = (~known).astype(np.float32)  # 1 at unknown pixels: masks the known rows
        self.prior_weight = np.float32(prior_weight)
        edges = _edge_weights(rgb, sigma_color, dtype=np.float32)
        self.edge_weights: list[np.ndarray] = []
        self.curve_weights: list[np.ndarray] = []
        # where the two edges (a, b) and (b, c) of every run (a, b, c) sit in the edge grid
        self._run_in_edges: dict[tuple[int, int], tuple[tuple[slice, slice], ...]] = {}
        for (dy, dx), weight, scale in zip(_DIRECTIONS, edges, (1.0, 1.0, 0.5, 0.5), strict=True):
            offset = 0 if dx >= 0 else 1  # image column of the edge grid's first column
            first, second = (
                (rows, slice(cols.start - offset, cols.stop - offset))
                for rows, cols in _run_slices(self.shape, dy, dx, 3)[:2]
            )
            self._run_in_edges[(dy, dx)] = (first, second)
            # curvature weight of a run (a, b, c): the smaller affinity of its two steps
            curve = np.minimum(weight[first], weight[second])
            if scale != 1.0:
                curve *= np.float32(scale)
            self.curve_weights.append(curve)
            weight *= np.float32(first_order_weight)
            self.edge_weights.append(weight)
        self._edge_buffer = np.empty(known.size, np.float32)
        self._run_buffer = np.empty(known.size, np.float32)

    def diagonal(self) -> np.ndarray:
        """Diagonal of the operator ``[h, w]`` float32 (prior term included)."""
        diag = np.full(self.shape, self.prior_weight, np.float32)
        for (dy, dx), edge, curve in zip(_DIRECTIONS, self.edge_weights, self.curve_weights, strict=True):
            s0, s1 = _run_slices(self.shape, dy, dx, 2)
            diag[s0] += edge
            diag[s1] += edge
            a, b, c = _run_slices(self.shape, dy, dx, 3)
            diag[a] += curve
            diag[c] += curve
            diag[b] += np.float32(4.0) * curve
        return diag

    def apply(self, x: np.ndarray, out: np.ndarray, *, prior: bool = True) -> np.ndarray:
        """``out = A x`` on the full grid (float32 ``[h, w]``); rows of known pixels are 0.

        Per direction, with ``g = x_i - x_j`` on the edges: the curvature of a run (a, b, c) is
        ``g_ab - g_bc``; its weighted value ``u`` enters the edge fluxes as ``+u`` on (a, b) and
        ``-u`` on (b, c), and the fluxes ``F = w g + ...`` are scattered as ``out_i += F``,
        ``out_j -= F``. Eight array passes per direction.
        """
        if prior:
            np.multiply(x, self.prior_weight, out=out)
        else:
            out.fill(0.0)
        for (dy, dx), edge, curve in zip(_DIRECTIONS, self.edge_weights, self.curve_weights, strict=True):
            if edge.size == 0:
                continue
            s0, s1 = _run_slices(self.shape, dy, dx, 2)
            flux = self._edge_buffer[: edge.size].reshape(edge.shape)
            np.subtract(x[s0], x[s1], out=flux)
            if curve.size:
                first, second = self._run_in_edges[(dy, dx)]
                bend = self._run_buffer[: curve.size].reshape(curve.shape)
                np.subtract(flux[first], flux[second], out=bend)
                bend *= curve
                flux *= edge
                flux[first] += bend
                flux[second] -= bend
            else:
                flux *= edge
            out[s0] += flux
            out[s1] -= flux
        out *= self.unknown
        return out


def _pcg(operator: _GridOperator, rhs: np.ndarray, x0: np.ndarray, *, tol: float, maxiter: int) -> np.ndarray:
    """Jacobi-preconditioned conjugate gradients on the unknown pixels, float32 ``[h, w]``.

    Stops when ``|r| <= tol * |rhs|`` (scipy's ``cg`` rule) or after ``maxiter`` iterations.
    Known pixels are 0 in ``rhs``, ``x0`` and every search direction.
    """
    inverse_diag = operator.diagonal()
    np.divide(1.0, inverse_diag, out=inverse_diag)
    inverse_diag *= operator.unknown
    x = x0
    r = operator.apply(x, np.empty_like(x))
    np.subtract(rhs, r, out=r)
    threshold = float(tol) * float(np.sqrt(_dot(rhs, rhs)))
    del rhs
    z = r * inverse_diag
    p = z.copy()
    q = np.empty_like(x)
    rz = _dot(r, z)
    iterations = 0
    while iterations < maxiter and float(np.sqrt(_dot(r, r))) > threshold:
        operator.apply(p, q)
        alpha = np.float32(rz / _dot(p, q))
        np.multiply(p, alpha, out=z)  # z is free until the preconditioning step
        x += z
        np.multiply(q, alpha, out=z)
        r -= z
        np.multiply(r, inverse_diag, out=z)
        rz_next = _dot(r, z)
        p *= np.float32(rz_next / rz)
        p += z
        rz = rz_next
        iterations += 1
    logger.debug("guided: level %s, %d CG iterations", x.shape, iterations)
    if iterations == maxiter:
        logger.debug("guided: CG stopped after %d iterations before reaching tol", maxiter)
    return x


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a.ravel(), b.ravel()))


def _solve_level(
    rgb: np.ndarray,
    values: np.ndarray,
    known: np.ndarray,
    prior: np.ndarray | None,
    *,
    prior_weight: float,
    first_order_weight: float,
    sigma_color: float | None,
    tol: float,
    maxiter: int,
) -> np.ndarray:
    """Minimise the colour-weighted energy over the unknown pixels of one level.

    Energy: ``curvature(x) + first_order_weight * sum_ij w_ij (x_i - x_j)^2
    + prior_weight * sum_i (x_i - prior_i)^2`` with known pixels fixed to ``values``
    (Dirichlet). Without a prior (the coarsest level, a few thousand pixels) the problem is
    solved directly with a sparse matrix; with one, matrix-free by Jacobi-preconditioned
    conjugate gradients in float32 started at the prior (:class:`_GridOperator`).
    ``rgb`` is ``[h, w, 3]`` float32 in [0, 1] or uint8; returns ``[h, w]`` float32.
    """
    h, w = known.shape
    if known.all():
        return values.astype(np.float32)
    if prior is None:
        return _solve_direct(rgb, values, known, first_order_weight, sigma_color)
    operator = _GridOperator(
        rgb,
        known,
        sigma_color=sigma_color,
        first_order_weight=first_order_weight,
        prior_weight=prior_weight,
    )
    fixed = np.where(known, values, 0.0).astype(np.float32)
    rhs = operator.apply(fixed, np.empty_like(fixed), prior=False)  # A_uk x_k on unknown rows
    del fixed
    np.negative(rhs, out=rhs)
    x0 = np.where(known, 0.0, prior).astype(np.float32)
    rhs += operator.prior_weight * x0
    solution = _pcg(operator, rhs, x0, tol=tol, maxiter=maxiter)
    del operator, rhs
    solution[known] = values[known]
    return solution


def _solve_direct(
    rgb: np.ndarray,
    values: np.ndarray,
    known: np.ndarray,
    first_order_weight: float,
    sigma_color: float | None,
) -> np.ndarray:
    """Sparse direct solve of the energy without prior (the coarsest pyramid level)."""
    h, w = known.shape
    rgb = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb
    flat_known = known.ravel()
    operator = _laplacian(rgb, sigma_color) * first_order_weight
    operator = (operator + _curvature_operator(rgb, sigma_color)).tocsr()
    unknown_idx = np.flatnonzero(~flat_known)
    known_idx = np.flatnonzero(flat_known)
    rows = operator[unknown_idx]
    system = rows[:, unknown_idx].tocsc()  # [U, U]
    rhs = -(rows[:, known_idx] @ values.ravel()[known_idx].astype(np.float64))  # [U]
    out = values.ravel().astype(np.float64)
    out[unknown_idx] = spsolve(system, rhs)
    return out.reshape(h, w).astype(np.float32)


def guided(
    image: Any,
    depth: Any,
    known_mask: Any = None,
    *,
    space: str = "inverse",
    sigma_color: float | None = 0.15,
    prior_weight: float = 0.01,
    first_order_weight: float = 0.05,
    coarsest_size: int = 40,
    tol: float = 1e-4,
    maxiter: int = 200,
    range_margin: float = 1.5,
) -> np.ndarray:
    """RGB-guided weighted least-squares fill (Levin et al. colorization style), coarse to fine.

    Energy on a pixel graph with 8 neighbours: ``sum_ij w_ij (x_i - x_j)^2`` with colour
    affinities ``w_ij = exp(-|I_i - I_j|^2 / 2 sigma^2)``, known pixels fixed. The image and the
    known depth are reduced by factors of 2 until the larger side is at most ``coarsest_size``;
    the coarsest level is solved exactly (sparse direct), and each finer level adds a data term
    ``prior_weight * (x - up(x_coarser))^2`` that keeps isolated sparse points from turning into
    spikes while the colour affinities re-sharpen depth edges. The finer levels are solved by
    Jacobi-preconditioned conjugate gradients applied matrix-free in float32 (no sparse matrix at
    those sizes): peak memory is about 85 bytes per pixel (``BYTES_PER_PIXEL["guided"]`` is the
    guard's bound) and a 12 MP image takes about 20 s of CPU time. Deterministic.

    Args:
        image: RGB image aligned with ``depth`` (anything :func:`depthlab.inputs.to_rgb_uint8`
            accepts), ``[H, W, 3]``.
        depth: ``[H, W]`` depth (any units, > 0 at known pixels for ``space="inverse"``/"log").
        known_mask: ``[H, W]`` bool, True = known; None -> ``isfinite(depth) & (depth > 0)``.
        space: quantity that is interpolated: ``"inverse"`` (1/depth, the default: planes are
            linear in it), ``"log"`` or ``"linear"`` (depth itself). Falls back to ``"linear"``
            when a known depth is 0.
        sigma_color: colour scale of the affinities in [0, 1] RGB units (0.15 was best of the
            values tried on NYUv2); None = the RMS colour difference of neighbouring pixels.
        prior_weight: weight of the coarse-level data term at finer levels (> 0).
        first_order_weight: weight of the first-order (membrane) term relative to the
            curvature term (>= 0).
        coarsest_size: larger side of the coarsest pyramid level, in pixels (>= 4).
        tol: relative residual at which conjugate gradients stop, per level.
        maxiter: maximum conjugate-gradient iterations per level.
        range_margin: filled depth is clipped to ``[min_known / m, max_known * m]`` (>= 1).

    Returns:
        float32 ``[H, W]`` depth in the input units, equal to ``depth`` at known pixels.
    """
    rgb = to_rgb_uint8(image)
    depth, known = _prepare(depth, known_mask)
    check_completion_inputs(rgb, depth, known, allow_all_known=True)
    if space not in ("inverse", "log", "linear"):
        raise ValueError(f"`space` must be one of 'inverse', 'log', 'linear'; got {space!r}")
    if not prior_weight > 0:
        raise ValueError(f"`prior_weight` must be > 0; got {prior_weight!r}")
    if not range_margin >= 1:
        raise ValueError(f"`range_margin` must be >= 1; got {range_margin!r}")
    if int(coarsest_size) < 4:
        raise ValueError(f"`coarsest_size` must be >= 4; got {coarsest_size!r}")
    if known.all():
        return depth.copy()

    # 1. work in the chosen space (float32); unknown pixels are 0 and never read
    positive = bool(np.all(depth[known] > 0))
    if space != "linear" and not positive:
        logger.info("guided: a known depth is 0; interpolating depth instead of %s depth", space)
        space = "linear"
    known_depth = depth[known].astype(np.float64)
    values = np.zeros(depth.shape, np.float32)
    if space == "inverse":
        values[known] = 1.0 / known_depth
    elif space == "log":
        values[known] = np.log(known_depth)
    else:
        values[known] = known_depth
    low, high = float(known_depth.min()), float(known_depth.max())
    del known_depth

    # 2. pyramids of the coarser levels: colour [h, w, 3] float32 in [0, 1], known coverage and
    # mean known value per cell. The full-resolution level is used as given (uint8 colour,
    # exact known values), so it costs no copies.
    images: list[np.ndarray] = [rgb]
    masks: list[np.ndarray | None] = [None]
    sums: list[np.ndarray | None] = [None]
    while max(images[-1].shape[:2]) > coarsest_size and min(images[-1].shape[:2]) >= 8:
        h, w = images[-1].shape[:2]
        size = ((w + 1) // 2, (h + 1) // 2)  # cv2 wants (width, height)
        if len(images) == 1:
            finest_image = rgb.astype(np.float32)
            finest_image *= np.float32(1.0 / 255.0)
            images.append(cv2.resize(finest_image, size, interpolation=cv2.INTER_AREA))
            del finest_image
            finest_mask = known.astype(np.float32)
            masks.append(cv2.resize(finest_mask, size, interpolation=cv2.INTER_AREA))
            finest_mask *= values
            sums.append(cv2.resize(finest_mask, size, interpolation=cv2.INTER_AREA))
            del finest_mask
        else:
            images.append(cv2.resize(images[-1], size, interpolation=cv2.INTER_AREA))
            masks.append(cv2.resize(masks[-1], size, interpolation=cv2.INTER_AREA))
            sums.append(cv2.resize(sums[-1], size, interpolation=cv2.INTER_AREA))

    # 3. solve from the coarsest level up; the finest level uses the exact known values
    solution: np.ndarray | None = None
    for level in range(len(images) - 1, -1, -1):
        if level == 0:
            level_known, level_values = known, values
        else:
            coverage, level_sums = masks[level], sums[level]
            assert coverage is not None and level_sums is not None
            level_known = coverage > 1e-6
            level_values = np.where(level_known, level_sums / np.maximum(coverage, 1e-6), 0.0)
            level_values = level_values.astype(np.float32)
        prior = None
        if solution is not None:
            h, w = level_known.shape
            prior = cv2.resize(solution, (w, h), interpolation=cv2.INTER_LINEAR)
            solution = None
        solution = _solve_level(
            images[level],
            level_values,
            level_known,
            prior,
            prior_weight=prior_weight,
            first_order_weight=first_order_weight,
            sigma_color=sigma_color,
            tol=tol,
            maxiter=maxiter,
        )
        del prior, level_values, level_known
        images[level] = masks[level] = sums[level] = None  # type: ignore[call-overload]

    # 4. back to depth units (in place); known pixels exactly as given
    # the curvature term can overshoot far from known pixels: keep the result within
    # [min / range_margin, max * range_margin] of the known depth
    assert solution is not None
    del values
    out = solution
    if space == "inverse":
        np.maximum(out, np.float32(1e-12), out=out)
        np.divide(np.float32(1.0), out, out=out)
    elif space == "log":
        np.clip(out, -80.0, 80.0, out=out)
        np.exp(out, out=out)
    np.clip(out, np.float32(low / range_margin), np.float32(high * range_margin), out=out)
    out[known] = depth[known]
    return out


# ----------------------------------------------------------------------------------------------
# lidar: Ku et al. 2018 morphological fill
# ----------------------------------------------------------------------------------------------

_DIAMOND_5 = np.array(
    [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
    ],
    np.uint8,
)


def lidar(
    depth: Any,
    known_mask: Any = None,
    *,
    max_depth: float | None = None,
    extrapolate_top: bool = True,
    blur: bool = True,
) -> np.ndarray:
    """Morphological fill for sparse LiDAR-like depth after Ku et al. (2018).

    Steps (on inverted depth ``max_depth - d`` so that dilation favours near points): diamond 5x5
    dilation, 5x5 closing, 7x7 dilation of small holes, extension of each column's top value to
    the top of the frame, 31x31 dilation of large holes, 5x5 median blur and 5x5 Gaussian blur of
    the filled pixels, inversion back. Remaining empty pixels take the nearest known value; known
    pixels keep their exact input values. Kernel sizes are in pixels (tuned for KITTI 1242x375).

    Args:
        depth: ``[H, W]`` depth (any units).
        known_mask: ``[H, W]`` bool, True = known; None -> ``isfinite(depth) & (depth > 0)``.
        max_depth: inversion constant in depth units; None -> 1.01 x the largest known depth.
        extrapolate_top: extend the topmost value of each column upward (LiDAR has no returns
            from the sky region).
        blur: apply the median and Gaussian blurs.

    Returns:
        float32 ``[H, W]`` depth, equal to ``depth`` at known pixels.
    """
    depth, known = _prepare(depth, known_mask)
    if known.all():
        return depth.copy()
    top = float(depth[known].max())
    if max_depth is None:
        max_depth = top * 1.01 + 1e-6
    if not max_depth > top:
        raise ValueError(f"`max_depth` must exceed the largest known depth {top:g}; got {max_depth!r}")

    # 1. invert: valid pixels become max_depth - d (> 0), empty pixels 0
    inverted = np.where(known, max_depth - depth, 0.0).astype(np.float32)
    # 2. dilate with a diamond kernel, 3. close small holes
    inverted = cv2.dilate(inverted, _DIAMOND_5)
    inverted = cv2.morphologyEx(inverted, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    # 4. fill small holes with a 7x7 dilation
    dilated = cv2.dilate(inverted, np.ones((7, 7), np.uint8))
    inverted = np.where(inverted <= 0, dilated, inverted)
    # 5. extend the topmost value of each column to the top of the frame
    if extrapolate_top:
        has_value = inverted > 0
        top_row = np.argmax(has_value, axis=0)  # [W]
        columns = np.flatnonzero(has_value.any(axis=0))
        rows = np.arange(inverted.shape[0])[:, None]
        above = (rows < top_row[None, :]) & np.isin(np.arange(inverted.shape[1]), columns)[None, :]
        inverted = np.where(above, inverted[top_row, np.arange(inverted.shape[1])][None, :], inverted)
    # 6. fill large holes with a 31x31 dilation
    dilated = cv2.dilate(inverted, np.ones((31, 31), np.uint8))
    inverted = np.where(inverted <= 0, dilated, inverted)
    # 7./8. median then Gaussian blur, applied to filled pixels only
    if blur:
        valid = inverted > 0
        median = cv2.medianBlur(inverted, 5)
        inverted = np.where(valid, median, inverted)
        gaussian = cv2.GaussianBlur(inverted, (5, 5), 0)
        inverted = np.where(valid & (gaussian > 0), gaussian, inverted)
    # 9. invert back; anything still empty takes the nearest known value
    filled = np.where(inverted > 0, max_depth - inverted, 0.0).astype(np.float32)
    empty = inverted <= 0
    if empty.any():
        filled[empty] = _nearest(depth, known)[empty]
    filled[known] = depth[known]
    return filled


# ----------------------------------------------------------------------------------------------
# memory: per-method estimates and the guard that runs before any work
# ----------------------------------------------------------------------------------------------

# Peak memory of each method in bytes per input pixel (inputs excluded): the worst case measured by
# benchmarks/method_memory.py (results: benchmarks/results/method_memory.md), rounded up with margin.
BYTES_PER_PIXEL = {"guided": 100, "linear": 80, "nearest": 60, "lidar": 90}
# ``linear`` also pays per triangulated point (the known pixels next to an unknown one): Qhull's
# Delaunay triangulation and the simplex search, measured about 1.2 kB per point
_LINEAR_BYTES_PER_POINT = 1300
# fixed cost of a call on top of the per-pixel part (small pyramid levels, module-level buffers)
_FIXED_BYTES = 32 * 2**20


class InsufficientMemoryError(MemoryError, ValueError):
    """A method would need more memory than is available; raised before any work is done."""


def memory_estimate(method: str, shape: tuple[int, ...], known_mask: np.ndarray | None = None) -> int:
    """Peak memory in bytes that ``method`` needs for an ``[H, W]`` input (inputs excluded).

    Per-pixel cost from :data:`BYTES_PER_PIXEL` (measured) plus a small fixed cost; for
    ``linear`` also a cost per triangulated point, counted from ``known_mask`` (``[H, W]`` bool;
    without it only the per-pixel part is counted).
    """
    if method not in BYTES_PER_PIXEL:
        raise ValueError(f"`method` must be one of {', '.join(BYTES_PER_PIXEL)}; got {method!r}")
    height, width = int(shape[0]), int(shape[1])
    need = BYTES_PER_PIXEL[method] * height * width + _FIXED_BYTES
    if method == "linear" and known_mask is not None:
        known = np.asarray(known_mask, bool)
        near_hole = cv2.dilate((~known).view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
        need += _LINEAR_BYTES_PER_POINT * int(np.count_nonzero(near_hole & known))
    return need


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping, or None when unknown.

    ``MemAvailable`` of ``/proc/meminfo``, lowered to the cgroup limit minus its usage when the
    process runs in a memory-limited container (cgroup v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``).
    """
    candidates = []
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
                    break
    except OSError:
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            with open(limit_file) as handle:
                limit = handle.read().strip()
            with open(usage_file) as handle:
                usage = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" or a huge number = no limit
            candidates.append(max(int(limit) - usage, 0))
        break
    return min(candidates) if candidates else None


def _format_bytes(count: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6)):
        if count >= size / 10:
            return f"{count / size:.1f} {unit}"
    return f"{count / 1e3:.0f} kB"


def check_memory(
    method: str,
    shape: tuple[int, ...],
    known_mask: np.ndarray | None = None,
    *,
    available: int | None = None,
) -> int:
    """Raise :class:`InsufficientMemoryError` when ``method`` on ``shape`` needs more than is available.

    Args:
        method: classical method name.
        shape: ``(H, W)`` of the input.
        known_mask: ``[H, W]`` bool known pixels (used by the ``linear`` estimate).
        available: bytes that may be used; None -> :func:`available_memory` (no check when unknown).

    Returns:
        The estimate in bytes.
    """
    need = memory_estimate(method, shape, known_mask)
    if available is None:
        available = available_memory()
    if available is not None and need > available:
        height, width = int(shape[0]), int(shape[1])
        raise InsufficientMemoryError(
            f"{method} needs about {_format_bytes(need)} for {width}x{height} "
            f"({need / max(height * width, 1):.0f} B/pixel); {_format_bytes(available)} available"
        )
    return need
