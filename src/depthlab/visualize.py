"""Pictures of depth maps: colourised depth, colour bars and side-by-side panels.

Pure functions that return ``uint8 [H, W, 3]`` RGB arrays; :mod:`depthlab.io` writes them.
Needs numpy, OpenCV and matplotlib (for the colormaps only; pyplot is never imported).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

__all__ = [
    "depth_range",
    "colorize",
    "add_colorbar",
    "add_caption",
    "dilate_points",
    "error_map",
    "panel",
    "HOLE_COLOR",
    "SPARSE_FRACTION",
]

HOLE_COLOR = (255, 0, 255)
"""RGB colour that marks unknown (hole) pixels in panels: magenta."""

_BACKGROUND = (255, 255, 255)

SPARSE_FRACTION = 0.05
"""Known masks covering less than this fraction of the image are drawn with dilated points."""


def _cmap(name: str) -> Any:
    import matplotlib

    try:
        return matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(
            f"`cmap` must be a matplotlib colormap name (e.g. 'Spectral', 'turbo', 'viridis'); got {name!r}"
        ) from None


def depth_range(
    *depths: np.ndarray, masks: list[np.ndarray | None] | None = None, percentiles=(1.0, 99.0)
) -> tuple[float, float]:
    """Common display range ``(vmin, vmax)`` of depth maps, from percentiles of their valid values.

    Args:
        *depths: ``[H, W]`` arrays in the same units.
        masks: optional per-depth boolean masks of the pixels to use (None = finite & > 0).
        percentiles: lower and upper percentile, in [0, 100].

    Returns:
        ``(vmin, vmax)`` with ``vmin < vmax``; ``(0, 1)`` when no pixel is valid.
    """
    values = []
    for i, depth in enumerate(depths):
        depth = np.asarray(depth, dtype=np.float64)
        mask = None if masks is None else masks[i]
        valid = np.isfinite(depth) & (depth > 0)
        if mask is not None:
            valid &= np.asarray(mask, dtype=bool)
        values.append(depth[valid])
    merged = np.concatenate(values) if values else np.zeros(0)
    if merged.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(merged, percentiles)
    if not hi > lo:
        lo, hi = float(lo) - 0.5, float(hi) + 0.5
    return float(lo), float(hi)


def colorize(
    depth: np.ndarray,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "Spectral",
    invalid_mask: np.ndarray | None = None,
    invalid_color: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Colourise a depth map.

    Args:
        depth: ``[H, W]`` depth (any units).
        vmin: low end of the display range in depth units; None -> per-image 1st percentile of
            the valid pixels. Values outside the range are clipped.
        vmax: high end of the display range; None -> per-image 99th percentile.
        cmap: matplotlib colormap name; near depth gets the low end of the map.
        invalid_mask: ``[H, W]`` bool, pixels drawn in ``invalid_color`` (None -> non-finite or
            <= 0 pixels).
        invalid_color: RGB colour for invalid pixels.

    Returns:
        ``uint8 [H, W, 3]`` RGB.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"`depth` must have shape [H, W]; got {depth.shape}")
    if invalid_mask is None:
        invalid_mask = ~(np.isfinite(depth) & (depth > 0))
    invalid_mask = np.asarray(invalid_mask, dtype=bool)
    if invalid_mask.shape != depth.shape:
        raise ValueError(f"`invalid_mask` has shape {invalid_mask.shape}, depth {depth.shape}")
    if vmin is None or vmax is None:
        lo, hi = depth_range(depth, masks=[~invalid_mask])
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    if not vmax > vmin:
        raise ValueError(f"`vmax` must be > `vmin`; got vmin={vmin!r}, vmax={vmax!r}")
    normalised = np.clip((np.nan_to_num(depth) - vmin) / (vmax - vmin), 0.0, 1.0)
    rgba = _cmap(cmap)(normalised, bytes=True)  # [H, W, 4] uint8
    rgb = np.ascontiguousarray(rgba[..., :3])
    rgb[invalid_mask] = invalid_color
    return rgb


def _put_text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def add_colorbar(
    rgb: np.ndarray,
    vmin: float,
    vmax: float,
    *,
    cmap: str = "Spectral",
    label: str = "",
    ticks: int = 5,
) -> np.ndarray:
    """Append a vertical colour bar with ``ticks`` labelled values to the right of ``rgb``.

    Args:
        rgb: ``uint8 [H, W, 3]`` picture (usually from :func:`colorize`).
        vmin: low end of the range the picture was colourised with (depth units).
        vmax: high end of that range.
        cmap: the colormap used.
        label: unit label written under the bar, e.g. ``"m"``.
        ticks: number of labelled values (>= 2).

    Returns:
        ``uint8 [H, W + bar width, 3]``.
    """
    h, w = rgb.shape[:2]
    bar_w = max(8, h // 25)
    text_scale = max(0.3, h / 900.0)
    text_w = int(70 * text_scale / 0.4)
    strip = np.full((h, bar_w + text_w + 6, 3), _BACKGROUND, np.uint8)
    margin = max(6, h // 20)
    bar_h = max(2, h - 2 * margin)
    gradient = np.linspace(1.0, 0.0, bar_h)[:, None]  # top = vmax
    colours = _cmap(cmap)(np.repeat(gradient, bar_w, axis=1), bytes=True)[..., :3]
    strip[margin : margin + bar_h, 3 : 3 + bar_w] = colours
    for k in range(max(2, ticks)):
        fraction = k / (max(2, ticks) - 1)
        y = int(margin + (1.0 - fraction) * (bar_h - 1))
        value = vmin + fraction * (vmax - vmin)
        _put_text(strip, f"{value:.3g}", (bar_w + 6, min(h - 2, y + 4)), text_scale)
    if label:
        _put_text(strip, label, (3, h - 2), text_scale)
    return np.concatenate([np.asarray(rgb, np.uint8), strip], axis=1)


def add_caption(rgb: np.ndarray, text: str) -> np.ndarray:
    """Append a white band with one line of ``text`` under ``rgb`` (``uint8 [H, W, 3]``)."""
    rgb = np.asarray(rgb, np.uint8)
    h, w = rgb.shape[:2]
    scale = max(0.35, min(h, 2 * w) / 1000.0)
    band_h = int(28 * scale / 0.5)
    band = np.full((band_h, w, 3), _BACKGROUND, np.uint8)
    _put_text(band, text, (4, band_h - int(8 * scale / 0.5)), scale)
    return np.concatenate([rgb, band], axis=0)


def dilate_points(
    colored: np.ndarray, known_mask: np.ndarray, radius: int, background: tuple[int, int, int]
) -> np.ndarray:
    """Draw every known pixel of ``colored`` as a disc of ``radius`` pixels (display only).

    Each pixel within ``radius`` of a known pixel takes the colour of the nearest known pixel;
    the others get ``background``. ``colored``: ``uint8 [H, W, 3]``; ``known_mask``: ``[H, W]``.
    """
    from scipy import ndimage

    known_mask = np.asarray(known_mask, bool)
    out = np.empty_like(colored)
    out[:] = background
    if not known_mask.any():
        return out
    distance, (rows, cols) = ndimage.distance_transform_edt(~known_mask, return_indices=True)
    near = distance <= radius
    out[near] = colored[rows[near], cols[near]]
    return out


def error_map(
    pred: np.ndarray,
    gt: np.ndarray,
    valid_mask: np.ndarray | None = None,
    *,
    vmax: float | None = None,
    cmap: str = "magma",
) -> np.ndarray:
    """Colourised absolute error ``|pred - gt|`` (black where ``gt`` is invalid).

    Args:
        pred: ``[H, W]`` predicted depth.
        gt: ``[H, W]`` ground-truth depth in the same units.
        valid_mask: pixels with ground truth (None -> ``gt`` finite and > 0).
        vmax: error at the top of the colormap; None -> 99th percentile of the errors.
        cmap: matplotlib colormap name.

    Returns:
        ``uint8 [H, W, 3]``.
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"`pred` has shape {pred.shape} but `gt` has shape {gt.shape}")
    if valid_mask is None:
        valid_mask = np.isfinite(gt) & (gt > 0)
    error = np.where(valid_mask, np.abs(pred - gt), 0.0)
    if vmax is None:
        vmax = float(np.percentile(error[valid_mask], 99)) if valid_mask.any() else 1.0
    vmax = max(float(vmax), 1e-12)
    return colorize(error, vmin=0.0, vmax=vmax, cmap=cmap, invalid_mask=~valid_mask)


def panel(
    rgb: np.ndarray,
    input_depth: np.ndarray,
    known_mask: np.ndarray,
    completed: np.ndarray,
    *,
    error: np.ndarray | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "Spectral",
    titles: bool = True,
    gap: int = 4,
    colorbar: bool = False,
    unit: str = "",
    caption: str = "",
    point_radius: int | None = None,
) -> np.ndarray:
    """Side-by-side picture: RGB | input depth (holes in magenta) | completed depth [| error].

    Both depth maps share one colour range (``vmin``/``vmax``; None -> percentiles of the known
    and completed depth). Sparse input (known pixels < :data:`SPARSE_FRACTION` of the image)
    is drawn with each known pixel dilated to a disc, so single points stay visible.

    Args:
        rgb: ``uint8 [H, W, 3]`` image.
        input_depth: ``[H, W]`` partial depth; pixels outside ``known_mask`` are drawn in
            :data:`HOLE_COLOR`.
        known_mask: ``[H, W]`` bool, True = known.
        completed: ``[H, W]`` completed depth.
        error: optional ``uint8 [H, W, 3]`` picture (e.g. from :func:`error_map`) as a 4th tile.
        vmin: low end of the colour range of the depth tiles.
        vmax: high end of the colour range of the depth tiles.
        cmap: matplotlib colormap of the depth tiles.
        titles: write a title above each tile.
        gap: white pixels between tiles.
        colorbar: append a colour bar of the depth tiles' range on the right.
        unit: unit label under the colour bar (e.g. ``"m"``).
        caption: one line written under the tiles (e.g. method, known %, time).
        point_radius: radius in pixels of the discs that show sparse known pixels; None -> auto
            (``max(1, min(H, W) // 120)`` when the input is sparse, else 0 = no dilation).

    Returns:
        ``uint8 [H (+ title band) (+ caption band), W', 3]``.
    """
    rgb = np.asarray(rgb, np.uint8)
    known_mask = np.asarray(known_mask, bool)
    h, w = known_mask.shape
    if rgb.shape[:2] != (h, w) or np.shape(input_depth) != (h, w) or np.shape(completed) != (h, w):
        raise ValueError(
            f"panel inputs must share one size: rgb {rgb.shape[:2]}, input_depth "
            f"{np.shape(input_depth)}, known_mask {known_mask.shape}, completed {np.shape(completed)}"
        )
    if vmin is None or vmax is None:
        lo, hi = depth_range(input_depth, completed, masks=[known_mask, None])
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    if point_radius is None:
        sparse = known_mask.mean() < SPARSE_FRACTION
        point_radius = max(1, min(h, w) // 120) if sparse else 0
    input_tile = colorize(
        input_depth, vmin=vmin, vmax=vmax, cmap=cmap, invalid_mask=~known_mask, invalid_color=HOLE_COLOR
    )
    input_title = "input (holes magenta)"
    if point_radius > 0:
        input_tile = dilate_points(input_tile, known_mask, int(point_radius), HOLE_COLOR)
        input_title = f"input ({int(known_mask.sum())} points, drawn r={int(point_radius)})"
    tiles = [
        ("image", rgb),
        (input_title, input_tile),
        ("completed", colorize(completed, vmin=vmin, vmax=vmax, cmap=cmap)),
    ]
    if error is not None:
        error = np.asarray(error, np.uint8)
        if error.shape != (h, w, 3):
            raise ValueError(f"`error` must be uint8 [{h}, {w}, 3]; got {error.shape}")
        tiles.append(("abs. error", error))
    spacer = np.full((h, gap, 3), _BACKGROUND, np.uint8)
    row = []
    for i, (_, tile) in enumerate(tiles):
        if i:
            row.append(spacer)
        row.append(tile)
    body = np.concatenate(row, axis=1)
    if colorbar:
        body = add_colorbar(body, vmin, vmax, cmap=cmap, label=unit)
    if titles:
        scale = max(0.35, h / 1000.0)
        band_h = int(28 * scale / 0.5)
        band = np.full((band_h, body.shape[1], 3), _BACKGROUND, np.uint8)
        for i, (title, _) in enumerate(tiles):
            _put_text(band, title, (i * (w + gap) + 4, band_h - int(8 * scale / 0.5)), scale)
        body = np.concatenate([band, body], axis=0)
    if caption:
        body = add_caption(body, caption)
    return body
