"""Benchmark runner: dataset x mask protocols x methods -> predictions, metrics, tables, figures.

For every sample, protocol and method (in that order):

1. draw the known mask with :func:`depthlab.masks.make_mask` seeded by
   ``protocol_rng(seed, sample_id, protocol)`` (``sensor``: the dataset's own partial depth), and
   save it to ``masks/<protocol>/<sample>.npy``;
2. run the method on ``(rgb, depth where known else 0, known_mask)`` and save the prediction to
   ``predictions/<protocol>/<method>/<sample>.npy`` -- an existing prediction of the right shape
   is reused, so an interrupted run resumes where it stopped;
3. score the saved prediction (clipped to the dataset's depth range) on the regions ``unknown``
   (valid & not known), ``known`` and ``all`` (valid).

A failing sample is logged and listed (``status = failed`` rows and ``failures`` in the summary),
never fatal. Outputs in ``out/``: ``config.yaml`` (the merged config), ``per_sample.csv``,
``summary.json``, ``table.md`` (methods x protocols in the layout of the paper's tables) and
``figures/<protocol>/<method>.png`` (RGB | input | prediction | error for the first samples).
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import platform
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from depthlab import masks as mask_protocols
from depthlab.completion import check_method
from depthlab.config import deep_merge
from depthlab.evaluation.metrics import (
    HIGHER_IS_BETTER,
    METRIC_NAMES,
    REGIONS,
    clip_prediction,
    compute_metrics,
    region_mask,
)

__all__ = [
    "EvalConfig",
    "merge_config",
    "run_evaluation",
    "build_method",
    "markdown_table",
    "protocol_label",
]

logger = logging.getLogger(__name__)

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
}


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------
@dataclass
class EvalConfig:
    """One evaluation run (what ``depthlab eval`` and the eval configs describe).

    The YAML side is loaded by :func:`depthlab.config.load_config` (``kind="eval"``; packaged
    configs in ``src/depthlab/configs/eval/``).

    Attributes:
        datasets: list of ``{"name": ..., "root": ..., "options": {...}, "label": ...}``; each is
            evaluated with every protocol and method (``label`` names it in the table).
        protocols: mask protocol strings (``docs/protocols.md``).
        methods: method names from the registry (:func:`depthlab.completion.method_names`):
            ``guided``, ``linear``, ``nearest``, ``lidar``, ``depthlab``, ``auto``,
            ``align:<hub id or folder>``, ...
        method_options: ``{method: {option: value}}`` passed to the method.
        out: output folder.
        limit: evaluate only the first N samples of each dataset.
        seed: mask seed (``docs/protocols.md``, "Seeding in evaluation").
        regions: regions scored (``unknown``, ``known``, ``all``).
        table_metrics: metric columns of ``table.md`` (e.g. ``[abs_rel, delta1]`` or ``[rmse]``).
        table_region: region the table reports.
        num_figures: samples shown in each figure grid (0 = no figures).
        clip_predictions: clip predictions to the dataset's (min_depth, max_depth) before scoring.
        title: heading of ``table.md``.
    """

    datasets: list[dict[str, Any]] = field(default_factory=list)
    protocols: list[str] = field(default_factory=lambda: ["ratio:5"])
    methods: list[str] = field(default_factory=lambda: ["guided"])
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    out: str = "outputs/eval"
    limit: int | None = None
    seed: int = 0
    regions: list[str] = field(default_factory=lambda: ["unknown", "all"])
    table_metrics: list[str] = field(default_factory=lambda: ["abs_rel", "delta1"])
    table_region: str = "unknown"
    num_figures: int = 4
    clip_predictions: bool = True
    title: str = "depthlab evaluation"

    def validate(self, custom_methods: Sequence[str] = ()) -> EvalConfig:
        """Check every field; raise ``ValueError`` naming the bad one.

        ``custom_methods``: extra method names accepted (callables given to :func:`run_evaluation`).
        """
        if not self.datasets:
            raise ValueError("no dataset given: set `dataset` and `root` (or `datasets:` in the config)")
        for entry in self.datasets:
            if not isinstance(entry, Mapping) or "name" not in entry or "root" not in entry:
                raise ValueError(f"each dataset needs `name` and `root`; got {entry!r}")
        if not self.protocols:
            raise ValueError("no protocol given (e.g. --protocol ratio:5)")
        for protocol in self.protocols:
            mask_protocols.parse_protocol(protocol)
        if not self.methods:
            raise ValueError("no method given (e.g. --method guided)")
        for method in self.methods:
            if method not in custom_methods:
                check_method(method)
        for region in [*self.regions, self.table_region]:
            if region not in REGIONS:
                raise ValueError(f"region must be one of {REGIONS}; got {region!r}")
        if self.table_region not in self.regions:
            self.regions = [*self.regions, self.table_region]
        for name in self.table_metrics:
            if name not in METRIC_NAMES:
                raise ValueError(f"unknown table metric {name!r}; available: {list(METRIC_NAMES)}")
        if self.limit is not None and int(self.limit) < 1:
            raise ValueError(f"`limit` must be >= 1; got {self.limit!r}")
        if int(self.num_figures) < 0:
            raise ValueError(f"`num_figures` must be >= 0; got {self.num_figures!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def merge_config(file_config: Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> EvalConfig:
    """Build an :class:`EvalConfig` from a config dict and CLI overrides (None values ignored).

    ``dataset``/``root``/``dataset_options`` (single-dataset shorthand) become ``datasets``; a
    ``dataset`` override replaces the config's datasets.
    """
    merged: dict[str, Any] = dict(copy.deepcopy(file_config or {}))
    merged = deep_merge(merged, {k: v for k, v in overrides.items() if v is not None})
    single = {key: merged.pop(key, None) for key in ("dataset", "root", "dataset_options")}
    if single["dataset"] is not None or single["root"] is not None:
        if single["dataset"] is None or single["root"] is None:
            raise ValueError("give both `dataset` and `root` (e.g. --dataset nyuv2 --root DIR)")
        merged["datasets"] = [
            {
                "name": single["dataset"],
                "root": str(single["root"]),
                "options": single["dataset_options"] or {},
            }
        ]
    elif single["dataset_options"] and merged.get("datasets"):
        for entry in merged["datasets"]:
            entry["options"] = deep_merge(entry.get("options") or {}, single["dataset_options"])
    known = set(EvalConfig.__dataclass_fields__)
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(known)}")
    return EvalConfig(**merged).validate()


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------
MethodFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def build_method(method: str, options: Mapping[str, Any] | None = None) -> MethodFn:
    """Callable ``(rgb [H,W,3] uint8, depth [H,W], known_mask [H,W]) -> depth [H,W]`` for a name.

    Any method of the registry (:func:`depthlab.completion.method_names`). Expensive state (the
    DepthLab pipeline, a monocular model) is loaded once, here
    (:func:`depthlab.completion.prepare_method`).
    """
    from depthlab.completion import complete, prepare_method

    options = dict(options or {})
    if options.get("pipeline") is not None or method in ("depthlab", "auto"):
        options.setdefault("show_progress_bar", False)  # the run has its own progress bar
    prepared = prepare_method(method, **options)
    logger.info("method %s: %s", method, prepared.reason)

    def run(rgb: np.ndarray, depth: np.ndarray, known: np.ndarray) -> np.ndarray:
        return np.asarray(complete(rgb, depth, known, method=prepared).depth, dtype=np.float32)

    return run


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _item_key(dataset: str, sample_id: str, protocol: str, method: str) -> dict[str, str]:
    """The columns that identify one (dataset, sample, protocol, method) row."""
    return {"dataset": dataset, "sample_id": sample_id, "protocol": protocol, "method": method}


def _record_failure(
    failures: list[dict], per_sample: list[dict], record: dict, stage: str, message: str
) -> None:
    """Note a failed (dataset, sample, protocol, method) in the failure list and the per-sample rows."""
    failures.append({**record, "stage": stage, "error": message})
    per_sample.append({**record, "region": "", "status": "failed", "error": message})


def _slug(text: str) -> str:
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
    return "sensor"


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp.npy")
    np.save(temporary, array)
    temporary.replace(path)


def _load_prediction(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable prediction %s (%s); recomputing", path, error)
        return None
    if array.shape != shape:
        logger.warning("ignoring prediction %s of shape %s (expected %s)", path, array.shape, shape)
        return None
    return array.astype(np.float32)


def _known_mask_for(sample: Any, protocol: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(input_depth, known_mask)`` of one sample under one protocol."""
    if protocol.strip().lower() == "sensor":
        if sample.known_depth is None:
            raise ValueError(
                "protocol 'sensor' needs a dataset with its own partial depth "
                "(e.g. kitti_dc velodyne_raw, nyuv2 marigold raw depth, folder known/)"
            )
        known = mask_protocols.sensor_holes(sample.known_mask)
        return np.where(known, sample.known_depth, 0.0).astype(np.float32), known
    rng = mask_protocols.protocol_rng(seed, sample.sample_id, protocol)
    known = mask_protocols.make_mask(protocol, sample.valid_mask, rng)
    return np.where(known, sample.depth, 0.0).astype(np.float32), known


# ---------------------------------------------------------------------------------------------
# Tables and figures
# ---------------------------------------------------------------------------------------------
def markdown_table(
    summary_rows: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
    columns: Sequence[tuple[str, str]],
    metrics: Sequence[str],
    region: str,
    title: str | None = None,
    show_dataset: bool = False,
) -> str:
    """Methods x (dataset, protocol) x metrics Markdown table; best value per column in bold.

    ``summary_rows`` items have ``dataset``, ``protocol``, ``method``, ``region``, ``n_ok`` and the
    mean metrics.
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
                text = f"{value:.3f}" if metric != "rmse" or value < 100 else f"{value:.1f}"
                if best.get((dataset, protocol, metric)) == value and len(methods) > 1:
                    text = f"**{text}**"
                cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Scored region: `{region}`; per-image metrics averaged over images."]
    return "\n".join(lines) + "\n"


def _figure_row(
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


def _save_figure(rows: list[np.ndarray], path: Path, title: str) -> None:
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


# ---------------------------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------------------------
def _environment() -> dict[str, Any]:
    import depthlab

    info = {"depthlab": depthlab.__version__, "python": platform.python_version(), "numpy": np.__version__}
    return info


def run_evaluation(
    config: EvalConfig,
    *,
    methods: Mapping[str, MethodFn] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run a whole evaluation; returns the summary (also written to ``out/summary.json``).

    Args:
        config: a validated :class:`EvalConfig`.
        methods: optional prebuilt method callables by name (tests, custom methods); the others
            are built with :func:`build_method`.
        show_progress: tqdm progress bar.
    """
    from tqdm.auto import tqdm

    from depthlab.data import get_dataset

    config.validate(custom_methods=tuple(methods or ()))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")

    method_fns: dict[str, MethodFn] = dict(methods or {})
    method_errors: dict[str, str] = {}
    per_sample: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    dataset_info: list[dict[str, Any]] = []
    figure_rows: dict[tuple[str, str, str], list[np.ndarray]] = {}
    started = time.perf_counter()

    multi = len(config.datasets) > 1
    for entry in config.datasets:
        label = str(entry.get("label") or entry["name"])
        dataset = get_dataset(
            entry["name"], entry["root"], limit=config.limit, **(entry.get("options") or {})
        )
        dataset_info.append({"label": label, **dataset.describe()})
        base = out / _slug(label) if multi else out
        total = len(dataset) * len(config.protocols) * len(config.methods)
        progress = tqdm(total=total, desc=f"eval {label}", disable=not show_progress, unit="pred")
        for index in range(len(dataset)):
            sample_id = dataset.samples[index].sample_id
            try:
                sample = dataset[index]
            except Exception as error:  # noqa: BLE001 - a broken sample is reported, not fatal
                message = f"{type(error).__name__}: {error}"
                logger.warning("sample %s of %s could not be loaded: %s", sample_id, label, message)
                for protocol in config.protocols:
                    for method in config.methods:
                        record = _item_key(label, sample_id, protocol, method)
                        _record_failure(failures, per_sample, record, "load", message)
                progress.update(len(config.protocols) * len(config.methods))
                continue
            sample_slug = _slug(sample_id)
            for protocol in config.protocols:
                protocol_slug = _slug(protocol)
                try:
                    input_depth, known = _known_mask_for(sample, protocol, config.seed)
                    mask_path = base / "masks" / protocol_slug / f"{sample_slug}.npy"
                    if not mask_path.is_file():
                        _save_npy(mask_path, known)
                except Exception as error:  # noqa: BLE001
                    message = f"{type(error).__name__}: {error}"
                    for method in config.methods:
                        record = _item_key(label, sample_id, protocol, method)
                        _record_failure(failures, per_sample, record, "mask", message)
                    progress.update(len(config.methods))
                    continue
                for method in config.methods:
                    progress.set_postfix_str(f"{protocol} {method} {sample_id}"[:60])
                    record = _item_key(label, sample_id, protocol, method)
                    pred_path = base / "predictions" / protocol_slug / _slug(method) / f"{sample_slug}.npy"
                    seconds = math.nan
                    reused = False
                    try:
                        # 1. prediction (reused when present)
                        pred = _load_prediction(pred_path, sample.depth.shape)
                        if pred is not None:
                            reused = True
                        else:
                            if method in method_errors:
                                raise RuntimeError(method_errors[method])
                            if method not in method_fns:
                                try:
                                    method_fns[method] = build_method(
                                        method, config.method_options.get(method)
                                    )
                                except Exception as error:  # noqa: BLE001
                                    method_errors[method] = (
                                        f"could not set up method: {type(error).__name__}: {error}"
                                    )
                                    raise RuntimeError(method_errors[method]) from error
                            tic = time.perf_counter()
                            pred = np.asarray(method_fns[method](sample.rgb, input_depth, known), np.float32)
                            seconds = time.perf_counter() - tic
                            if pred.shape != sample.depth.shape:
                                raise ValueError(
                                    f"prediction shape {pred.shape} != depth shape {sample.depth.shape}"
                                )
                            _save_npy(pred_path, pred)
                        # 2. scoring, from the saved prediction
                        scored = pred
                        if config.clip_predictions:
                            high = dataset.max_depth if math.isfinite(dataset.max_depth) else None
                            scored = clip_prediction(pred, dataset.min_depth, high)
                        for region in config.regions:
                            pixels = region_mask(sample.valid_mask, known, region)
                            row = {
                                **record,
                                "region": region,
                                "status": "ok",
                                "error": "",
                                "n_known": int(known.sum()),
                                "seconds": seconds,
                                "reused": reused,
                            }
                            if pixels.any():
                                row.update(compute_metrics(scored, sample.depth, pixels))
                            else:
                                row.update({name: math.nan for name in METRIC_NAMES}, n_pixels=0.0)
                            per_sample.append(row)
                        key = (label, protocol, method)
                        if len(figure_rows.setdefault(key, [])) < config.num_figures:
                            figure_rows[key].append(
                                _figure_row(
                                    sample.rgb, input_depth, known, pred, sample.depth, sample.valid_mask
                                )
                            )
                    except Exception as error:  # noqa: BLE001 - reported, not fatal
                        message = f"{type(error).__name__}: {error}"
                        logger.warning("%s %s %s %s failed: %s", label, sample_id, protocol, method, message)
                        logger.debug("%s", traceback.format_exc())
                        _record_failure(failures, per_sample, record, "predict/score", message)
                    progress.update(1)
        progress.close()

    # 3. aggregate: per-image metrics, then the mean over images
    summary_rows: list[dict[str, Any]] = []
    for entry in config.datasets:
        label = str(entry.get("label") or entry["name"])
        for protocol in config.protocols:
            for method in config.methods:
                for region in config.regions:
                    rows = [
                        r
                        for r in per_sample
                        if r["dataset"] == label
                        and r["protocol"] == protocol
                        and r["method"] == method
                        and r.get("region") == region
                        and r["status"] == "ok"
                    ]
                    n_failed = sum(
                        1
                        for f in failures
                        if f["dataset"] == label and f["protocol"] == protocol and f["method"] == method
                    )
                    aggregate: dict[str, Any] = {
                        "dataset": label,
                        "protocol": protocol,
                        "method": method,
                        "region": region,
                        "n_ok": 0,
                        "n_failed": n_failed,
                    }
                    for name in METRIC_NAMES:
                        values = [r[name] for r in rows if math.isfinite(r.get(name, math.nan))]
                        aggregate[name] = float(np.mean(values)) if values else math.nan
                        aggregate["n_ok"] = max(aggregate["n_ok"], len(values))
                    timings = [r["seconds"] for r in rows if math.isfinite(r.get("seconds", math.nan))]
                    aggregate["seconds_per_sample"] = float(np.mean(timings)) if timings else math.nan
                    summary_rows.append(aggregate)

    # 4. write CSV, JSON, Markdown, figures
    fields = [
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
        "error",
    ]
    with open(out / "per_sample.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in per_sample:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})

    columns = [(str(e.get("label") or e["name"]), p) for e in config.datasets for p in config.protocols]
    table = markdown_table(
        summary_rows,
        config.methods,
        columns,
        config.table_metrics,
        config.table_region,
        title=config.title,
        show_dataset=multi,
    )
    (out / "table.md").write_text(table, encoding="utf-8")

    figures = []
    for (label, protocol, method), rows in figure_rows.items():
        if not rows:
            continue
        path = out / "figures" / (_slug(label) if multi else "") / _slug(protocol) / f"{_slug(method)}.png"
        _save_figure(rows, path, f"{label} | {protocol} | {method}: RGB, input, prediction, |error|")
        figures.append(str(path.relative_to(out)))

    summary = {
        "config": config.to_dict(),
        "datasets": dataset_info,
        "environment": _environment(),
        "seconds_total": time.perf_counter() - started,
        "results": summary_rows,
        "failures": failures,
        "figures": figures,
        "table": "table.md",
    }
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=2), encoding="utf-8")
    if failures:
        logger.warning("%d prediction(s) failed; see summary.json 'failures'", len(failures))
    return summary


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
