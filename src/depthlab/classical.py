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
  which also makes it well posed for isolated sparse points.
* :func:`lidar` is the morphological fill of Ku et al. (2018), "In Defense of Classical Image
  Processing: Fast Depth Completion on the CPU", for LiDAR-like input.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import cg, spsolve

from depthlab import preprocessing
from depthlab.inputs import check_completion_inputs, resolve_known_mask, to_depth_array, to_rgb_uint8

__all__ = ["nearest", "linear", "guided", "lidar"]

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


def _edge_weights(rgb: np.ndarray, sigma_color: float | None) -> tuple[np.ndarray, ...]:
    """Affinities of horizontal, vertical and the two diagonal neighbour pairs.

    ``rgb`` is float32 ``[h, w, 3]`` in [0, 1]. Weight = exp(-|dI|^2 / (2 sigma^2)) + 1e-4, with
    sigma taken from the image (root mean square of the colour differences) when None.
    """
    diffs = (
        rgb[:, 1:] - rgb[:, :-1],  # horizontal  [h, w-1, 3]
        rgb[1:, :] - rgb[:-1, :],  # vertical    [h-1, w, 3]
        rgb[1:, 1:] - rgb[:-1, :-1],  # diagonal  [h-1, w-1, 3]
        rgb[1:, :-1] - rgb[:-1, 1:],  # anti-diag [h-1, w-1, 3]
    )
    squared = [np.sum(d * d, axis=2) for d in diffs]
    if sigma_color is None:
        mean_sq = float(np.mean(np.concatenate([s.ravel() for s in squared[:2]])))
        sigma_sq = max(mean_sq, 1e-6)
    else:
        sigma_sq = float(sigma_color) ** 2
    # diagonal neighbours are sqrt(2) apart: half the weight
    scales = (1.0, 1.0, 0.5, 0.5)
    return tuple(
        (scale * (np.exp(-s / (2.0 * sigma_sq)) + 1e-4)).astype(np.float64)
        for s, scale in zip(squared, scales, strict=True)
    )


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
    (Dirichlet). Without a prior the problem is solved directly; with one, by
    Jacobi-preconditioned conjugate gradients started at the prior.
    """
    h, w = known.shape
    flat_known = known.ravel()
    if flat_known.all():
        return values.copy()
    operator = _laplacian(rgb, sigma_color) * first_order_weight
    operator = operator + _curvature_operator(rgb, sigma_color)
    operator = operator.tocsr()
    unknown_idx = np.flatnonzero(~flat_known)
    known_idx = np.flatnonzero(flat_known)
    rows = operator[unknown_idx]
    system = rows[:, unknown_idx].tocsr()  # [U, U]
    rhs = -(rows[:, known_idx] @ values.ravel()[known_idx])  # [U]
    out = values.ravel().astype(np.float64).copy()
    if prior is None:
        solution = spsolve(system.tocsc(), rhs)
    else:
        prior_u = prior.ravel()[unknown_idx].astype(np.float64)
        system = (system + sp.identity(unknown_idx.size, format="csr") * prior_weight).tocsr()
        rhs = rhs + prior_weight * prior_u
        preconditioner = sp.diags(1.0 / system.diagonal())
        solution, status = cg(system, rhs, x0=prior_u, rtol=tol, maxiter=maxiter, M=preconditioner)
        if status > 0:
            logger.debug("guided: CG stopped after %d iterations before reaching tol", status)
    out[unknown_idx] = solution
    return out.reshape(h, w)


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
    the coarsest level is solved exactly, and each finer level adds a data term
    ``prior_weight * (x - up(x_coarser))^2`` that keeps isolated sparse points from turning into
    spikes while the colour affinities re-sharpen depth edges.

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

    # 1. work in the chosen space; unknown pixels are 0 and never read
    positive = bool(np.all(depth[known] > 0))
    if space != "linear" and not positive:
        logger.info("guided: a known depth is 0; interpolating depth instead of %s depth", space)
        space = "linear"
    values = np.zeros(depth.shape, np.float64)
    if space == "inverse":
        values[known] = 1.0 / depth[known].astype(np.float64)
    elif space == "log":
        values[known] = np.log(depth[known].astype(np.float64))
    else:
        values[known] = depth[known]

    # 2. pyramids: colour [h, w, 3] in [0, 1], known coverage and mean known value per cell
    images = [rgb.astype(np.float32) / 255.0]
    masks = [known.astype(np.float32)]
    sums = [values.astype(np.float32) * masks[0]]
    while max(images[-1].shape[:2]) > coarsest_size and min(images[-1].shape[:2]) >= 8:
        h, w = images[-1].shape[:2]
        size = ((w + 1) // 2, (h + 1) // 2)  # cv2 wants (width, height)
        images.append(cv2.resize(images[-1], size, interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(masks[-1], size, interpolation=cv2.INTER_AREA))
        sums.append(cv2.resize(sums[-1], size, interpolation=cv2.INTER_AREA))

    # 3. solve from the coarsest level up; the finest level uses the exact known values
    solution: np.ndarray | None = None
    for level in range(len(images) - 1, -1, -1):
        if level == 0:
            level_known, level_values = known, values
        else:
            level_known = masks[level] > 1e-6
            level_values = np.where(
                level_known, sums[level] / np.maximum(masks[level], 1e-6), 0.0
            ).astype(np.float64)
        prior = None
        if solution is not None:
            h, w = level_known.shape
            prior = cv2.resize(solution.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
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

    # 4. back to depth units; known pixels exactly as given
    # the curvature term can overshoot far from known pixels: keep the result within
    # [min / range_margin, max * range_margin] of the known depth
    assert solution is not None
    if space == "inverse":
        filled = 1.0 / np.maximum(solution, 1e-12)
    elif space == "log":
        filled = np.exp(np.clip(solution, -700.0, 700.0))
    else:
        filled = solution
    low, high = float(depth[known].min()), float(depth[known].max())
    filled = np.clip(filled, low / range_margin, high * range_margin)
    out = filled.astype(np.float32)
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
