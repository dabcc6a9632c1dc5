"""Report of an evaluation run: ``table.md``, ``per_sample.csv``, ``summary.json`` and figures.

Pure writers of what :mod:`depthlab.evaluation.item` and :mod:`depthlab.evaluation.aggregate`
computed; nothing here scores or predicts.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from depthlab import masks as mask_protocols
from depthlab.evaluation.metrics import HIGHER_IS_BETTER, METRIC_NAMES

__all__ = [
    "METRIC_LABELS",
    "PER_SAMPLE_FIELDS",
    "protocol_label",
    "markdown_table",
    "figure_row",
    "save_figure",
    "write_per_sample_csv",
    "write_summary",
    "slug",
    "environment",
]

METRIC_LABELS = {
    "abs_rel": "AbsRel ↓",
    "sq_rel": "SqRel ↓",
    "rmse": "RMSE ↓",
    "rmse_log": "RMSE log ↓",
    "log10": "log10 ↓",
    "mae": "MAE ↓",
    "i_rmse": "iRMSE ↓",
    "i_mae": "iMAE ↓",
    "delta1": "δ1 ↑",
    "delta2": "δ2 ↑",
    "delta3": "δ3 ↑",
    "rmse_mm": "RMSE [mm] ↓",
    "mae_mm": "MAE [mm] ↓",
    "i_rmse_km": "iRMSE [1/km] ↓",
    "i_mae_km": "iMAE [1/km] ↓",
}


PER_SAMPLE_FIELDS = (
    "dataset",
    "sample_id",
    "protocol",
    "method",
    "region",
    "status",
    *METRIC_NAMES,
    "n_pixels",
    "n_known",
    "seconds",
    "reused",
    "options",
    "error",
)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def protocol_label(protocol: str) -> str:
    """Short column label: ``ratio:5`` -> ``5%``, ``points:500`` -> ``500 pts``, ..."""
    kind, params = mask_protocols.parse_protocol(protocol)

    def fmt(value: Any, percent: bool = False) -> str:
        if isinstance(value, tuple):
            return "-".join(fmt(v, percent) for v in value)
        value = value * 100 if percent else value
        return f"{value:g}"

    if kind == "ratio":
        return f"{fmt(params[0])}%"
    if kind == "points":
        return f"{fmt(params[0])} pts"
    if kind == "holes":
        return f"holes {fmt(params[0], True)}%"
    if kind == "lidar":
        beams = fmt(params[0]) if params else "64"
        return f"LiDAR {beams}" + (f"/{fmt(params[1])}" if len(params) > 1 else "")
    if kind == "border":
        return f"border {fmt(params[0], True)}%" if params else "border"
    if kind in ("orb", "sift"):
        return f"{kind.upper()} {fmt(params[0])}"
    if kind == "range":
        return f"range {fmt(params[0], True)}%"
    if kind == "blob":
        return f"blob {fmt(params[0], True)}%"
    if kind == "lines":
        return f"{fmt(params[0])} lines"
    return "sensor"


def markdown_table(
    summary_rows: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
    columns: Sequence[tuple[str, str]],
    metrics: Sequence[str],
    region: str,
    title: str | None = None,
    show_dataset: bool = False,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """Methods x (dataset, protocol) x metrics Markdown table; best value per column in bold.

    ``summary_rows`` items have ``dataset``, ``protocol``, ``method``, ``region``, ``n_ok`` and the
    mean metrics. ``settings``: ``{method: {option: value}}`` listed under the table (how each row
    was made: processing resolution, resize mode, steps, ensemble, ...).
    """
    lookup = {(r["dataset"], r["protocol"], r["method"], r["region"]): r for r in summary_rows}
    header = ["Method"]
    for dataset, protocol in columns:
        prefix = f"{dataset} {protocol_label(protocol)}" if show_dataset else protocol_label(protocol)
        header += [f"{prefix} {METRIC_LABELS[m]}" for m in metrics]
    best: dict[tuple[str, str, str], float] = {}
    for dataset, protocol in columns:
        for metric in metrics:
            values = [
                lookup[(dataset, protocol, m, region)][metric]
                for m in methods
                if (dataset, protocol, m, region) in lookup
                and math.isfinite(lookup[(dataset, protocol, m, region)].get(metric, math.nan))
            ]
            if values:
                best[(dataset, protocol, metric)] = max(values) if metric in HIGHER_IS_BETTER else min(values)
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        cells = [f"`{method}`"]
        for dataset, protocol in columns:
            row = lookup.get((dataset, protocol, method, region))
            for metric in metrics:
                value = math.nan if row is None else row.get(metric, math.nan)
                if not math.isfinite(value):
                    cells.append("–")
                    continue
                text = f"{value:.3f}" if value < 100 else f"{value:.1f}"
                if best.get((dataset, protocol, metric)) == value and len(methods) > 1:
                    text = f"**{text}**"
                cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Scored region: `{region}`; per-image metrics averaged over images."]
    if settings:
        lines += ["", "Method options:", ""]
        for method in methods:
            options = settings.get(method) or {}
            text = ", ".join(f"{key}={value}" for key, value in options.items()) or "defaults"
            lines.append(f"- `{method}`: {text}")
    return "\n".join(lines) + "\n"


def figure_row(
    rgb: np.ndarray,
    input_depth: np.ndarray,
    known: np.ndarray,
    pred: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray,
) -> np.ndarray:
    """One row of a figure grid: RGB | input | prediction | abs. error (uint8 RGB).

    Sparse inputs (< 5 % known) are drawn with each known pixel grown to 5x5 so they are visible.
    """
    if known.mean() < 0.05:
        from scipy import ndimage

        input_depth = ndimage.grey_dilation(np.where(known, input_depth, 0.0), size=(5, 5))
        known = ndimage.binary_dilation(known, structure=np.ones((5, 5), bool))
    try:
        from depthlab import visualize

        error = visualize.error_map(pred, gt, valid)
        lo, hi = visualize.depth_range(gt, masks=[valid])
        return visualize.panel(rgb, input_depth, known, pred, error=error, vmin=lo, vmax=hi)
    except ImportError:  # pragma: no cover - depthlab.visualize is part of the package
        import matplotlib

        values = gt[valid] if valid.any() else pred.ravel()
        lo, hi = np.percentile(values, (1, 99)) if values.size else (0.0, 1.0)
        cmap = matplotlib.colormaps["Spectral"]
        norm = lambda d: np.clip((d - lo) / max(hi - lo, 1e-9), 0, 1)  # noqa: E731
        shown_input = (cmap(norm(input_depth))[..., :3] * 255).astype(np.uint8)
        shown_input[~known] = (255, 0, 255)
        error = np.where(valid, np.abs(pred - gt), 0.0)
        top = np.percentile(error[valid], 99) if valid.any() else 1.0
        error_rgb = matplotlib.colormaps["magma"](np.clip(error / max(top, 1e-9), 0, 1))[..., :3] * 255
        tiles = [
            rgb,
            shown_input,
            (cmap(norm(pred))[..., :3] * 255).astype(np.uint8),
            error_rgb.astype(np.uint8),
        ]
        return np.concatenate(tiles, axis=1)


def save_figure(rows: list[np.ndarray], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    width = max(row.shape[1] for row in rows)
    padded = [np.pad(row, ((0, 4), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    grid = np.concatenate(padded, axis=0)
    dpi = 100
    figure = plt.figure(figsize=(grid.shape[1] / dpi, grid.shape[0] / dpi + 0.4), dpi=dpi)
    axis = figure.add_axes((0, 0, 1, grid.shape[0] / (grid.shape[0] + 40)))
    axis.imshow(grid)
    axis.axis("off")
    figure.suptitle(title, fontsize=10, y=0.995)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


def write_per_sample_csv(path: Path, per_sample: Sequence[Mapping[str, Any]]) -> None:
    """One row per (dataset, sample, protocol, method, region); floats with 6 significant digits."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=PER_SAMPLE_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in per_sample:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def write_summary(path: Path, summary: Mapping[str, Any]) -> None:
    """``summary.json``; non-finite floats are written as null."""
    path.write_text(json.dumps(_json_safe(summary), indent=2), encoding="utf-8")


def environment() -> dict[str, Any]:
    """Versions recorded with a run (depthlab, Python, numpy)."""
    import depthlab

    info = {"depthlab": depthlab.__version__, "python": platform.python_version(), "numpy": np.__version__}
    return info


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value
