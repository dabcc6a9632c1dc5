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

The work is split in three modules: :mod:`~depthlab.evaluation.item` (predict and score one
sample), :mod:`~depthlab.evaluation.aggregate` (one grouping pass over the rows) and
:mod:`~depthlab.evaluation.report` (table, CSV, JSON, figures); this module holds the run's
configuration and the loop.
"""

from __future__ import annotations

import copy
import json
import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from depthlab import masks as mask_protocols
from depthlab.completion import check_method
from depthlab.config import deep_merge
from depthlab.evaluation.aggregate import aggregate
from depthlab.evaluation.item import (
    MethodCache,
    MethodFn,
    build_method,
    known_mask_for,
    method_settings,
    predict,
    save_npy,
    score_rows,
)
from depthlab.evaluation.metrics import METRIC_NAMES, REGIONS
from depthlab.evaluation.report import (
    environment,
    figure_row,
    markdown_table,
    protocol_label,
    save_figure,
    slug,
    write_per_sample_csv,
    write_summary,
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
        self._check_datasets()
        self._check_protocols_and_methods(custom_methods)
        self._check_regions_and_metrics()
        if self.limit is not None and int(self.limit) < 1:
            raise ValueError(f"`limit` must be >= 1; got {self.limit!r}")
        if int(self.num_figures) < 0:
            raise ValueError(f"`num_figures` must be >= 0; got {self.num_figures!r}")
        return self

    def _check_datasets(self) -> None:
        if not self.datasets:
            raise ValueError("no dataset given: set `dataset` and `root` (or `datasets:` in the config)")
        for entry in self.datasets:
            if not isinstance(entry, Mapping) or "name" not in entry or "root" not in entry:
                raise ValueError(f"each dataset needs `name` and `root`; got {entry!r}")

    def _check_protocols_and_methods(self, custom_methods: Sequence[str]) -> None:
        if not self.protocols:
            raise ValueError("no protocol given (e.g. --protocol ratio:5)")
        for protocol in self.protocols:
            mask_protocols.parse_protocol(protocol)
        if not self.methods:
            raise ValueError("no method given (e.g. --method guided)")
        for method in self.methods:
            if method not in custom_methods:
                check_method(method)

    def _check_regions_and_metrics(self) -> None:
        for region in [*self.regions, self.table_region]:
            if region not in REGIONS:
                raise ValueError(f"region must be one of {REGIONS}; got {region!r}")
        if self.table_region not in self.regions:
            self.regions = [*self.regions, self.table_region]
        for name in self.table_metrics:
            if name not in METRIC_NAMES:
                raise ValueError(f"unknown table metric {name!r}; available: {list(METRIC_NAMES)}")

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
# Runner
# ---------------------------------------------------------------------------------------------
def _item_key(dataset: str, sample_id: str, protocol: str, method: str) -> dict[str, str]:
    """The columns that identify one (dataset, sample, protocol, method) row."""
    return {"dataset": dataset, "sample_id": sample_id, "protocol": protocol, "method": method}


def _message(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _label(entry: Mapping[str, Any]) -> str:
    return str(entry.get("label") or entry["name"])


@dataclass
class _Run:
    """State of one run: the rows, the failures and the figure rows collected so far."""

    config: EvalConfig
    methods: MethodCache
    progress: Any = None
    per_sample: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    dataset_info: list[dict[str, Any]] = field(default_factory=list)
    figure_rows: dict[tuple[str, str, str], list[np.ndarray]] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> recorded options

    def fail(self, record: dict[str, str], stage: str, message: str) -> None:
        """Note a failed item in the failure list and the per-sample rows."""
        self.failures.append({**record, "stage": stage, "error": message})
        options = json.dumps(self.settings.get(record["method"], {}), sort_keys=True)
        self.per_sample.append(
            {**record, "region": "", "status": "failed", "error": message, "options": options}
        )


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
    config.validate(custom_methods=tuple(methods or ()))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
    run = _Run(config, MethodCache(methods, config.method_options))
    run.settings = {m: method_settings(m, config.method_options.get(m)) for m in config.methods}
    started = time.perf_counter()

    # 1. predict and score every item (dataset x sample x protocol x method)
    multi = len(config.datasets) > 1
    for entry in config.datasets:
        _evaluate_dataset(run, entry, out / slug(_label(entry)) if multi else out, show_progress)

    # 2. aggregate: per-image metrics, then the mean over images
    labels = [_label(entry) for entry in config.datasets]
    results = aggregate(
        run.per_sample, run.failures, labels, config.protocols, config.methods, config.regions
    )

    # 3. report: CSV, Markdown, figures, JSON
    write_per_sample_csv(out / "per_sample.csv", run.per_sample)
    columns = [(label, protocol) for label in labels for protocol in config.protocols]
    table = markdown_table(
        results,
        config.methods,
        columns,
        config.table_metrics,
        config.table_region,
        title=config.title,
        show_dataset=multi,
        settings=run.settings,
    )
    (out / "table.md").write_text(table, encoding="utf-8")
    figures = _write_figures(run.figure_rows, out, multi)
    summary = {
        "config": config.to_dict(),
        "datasets": run.dataset_info,
        "environment": environment(),
        "seconds_total": time.perf_counter() - started,
        "method_settings": run.settings,
        "results": results,
        "failures": run.failures,
        "figures": figures,
        "table": "table.md",
    }
    write_summary(out / "summary.json", summary)
    if run.failures:
        logger.warning("%d prediction(s) failed; see summary.json 'failures'", len(run.failures))
    return summary


def _evaluate_dataset(run: _Run, entry: Mapping[str, Any], base: Path, show_progress: bool) -> None:
    from tqdm.auto import tqdm

    from depthlab.data import get_dataset

    config = run.config
    label = _label(entry)
    dataset = get_dataset(entry["name"], entry["root"], limit=config.limit, **(entry.get("options") or {}))
    run.dataset_info.append({"label": label, **dataset.describe()})
    total = len(dataset) * len(config.protocols) * len(config.methods)
    high = dataset.max_depth if np.isfinite(dataset.max_depth) else None
    depth_range = (dataset.min_depth, high) if config.clip_predictions else None
    with tqdm(total=total, desc=f"eval {label}", disable=not show_progress, unit="pred") as run.progress:
        for index in range(len(dataset)):
            sample_id = dataset.samples[index].sample_id
            try:
                sample = dataset[index]
            except Exception as error:  # noqa: BLE001 - a broken sample is reported, not fatal
                logger.warning("sample %s of %s could not be loaded: %s", sample_id, label, _message(error))
                for protocol, method in product(config.protocols, config.methods):
                    run.fail(_item_key(label, sample_id, protocol, method), "load", _message(error))
                run.progress.update(len(config.protocols) * len(config.methods))
                continue
            for protocol in config.protocols:
                _evaluate_protocol(run, sample, sample_id, label, protocol, base, depth_range)


def _evaluate_protocol(
    run: _Run, sample: Any, sample_id: str, label: str, protocol: str, base: Path, depth_range: tuple | None
) -> None:
    """Every method on one sample under one protocol (the mask is drawn and saved once)."""
    config = run.config
    sample_slug, protocol_slug = slug(sample_id), slug(protocol)
    try:
        input_depth, known = known_mask_for(sample, protocol, config.seed)
        mask_path = base / "masks" / protocol_slug / f"{sample_slug}.npy"
        if not mask_path.is_file():
            save_npy(mask_path, known)
    except Exception as error:  # noqa: BLE001
        for method in config.methods:
            run.fail(_item_key(label, sample_id, protocol, method), "mask", _message(error))
        run.progress.update(len(config.methods))
        return
    for method in config.methods:
        run.progress.set_postfix_str(f"{protocol} {method} {sample_id}"[:60])
        record = _item_key(label, sample_id, protocol, method)
        pred_path = base / "predictions" / protocol_slug / slug(method) / f"{sample_slug}.npy"
        try:
            # 1. prediction (reused when present), 2. scoring, from the saved prediction
            pred, seconds, reused = predict(
                lambda m=method: run.methods.get(m),
                sample,
                input_depth,
                known,
                pred_path,
                key=f"{label}/{protocol}/{sample_id}",
            )
            rows = score_rows(pred, sample, known, config.regions, depth_range, record)
            options = json.dumps(run.settings.get(method, {}), sort_keys=True)
            run.per_sample += [
                {**row, "seconds": seconds, "reused": reused, "options": options} for row in rows
            ]
            figures = run.figure_rows.setdefault((label, protocol, method), [])
            if len(figures) < config.num_figures:
                figures.append(
                    figure_row(sample.rgb, input_depth, known, pred, sample.depth, sample.valid_mask)
                )
        except Exception as error:  # noqa: BLE001 - reported, not fatal
            logger.warning("%s %s %s %s failed: %s", label, sample_id, protocol, method, _message(error))
            logger.debug("%s", traceback.format_exc())
            run.fail(record, "predict/score", _message(error))
        run.progress.update(1)


def _write_figures(
    figure_rows: Mapping[tuple[str, str, str], list[np.ndarray]], out: Path, multi: bool
) -> list[str]:
    figures = []
    for (label, protocol, method), rows in figure_rows.items():
        if not rows:
            continue
        path = out / "figures" / (slug(label) if multi else "") / slug(protocol) / f"{slug(method)}.png"
        save_figure(rows, path, f"{label} | {protocol} | {method}: RGB, input, prediction, |error|")
        figures.append(str(path.relative_to(out)))
    return figures
