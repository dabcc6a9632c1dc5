"""Aggregate per-sample rows into the summary rows of an evaluation run (one grouping pass).

Per-image metrics first (:mod:`depthlab.evaluation.item`), then here the mean over images of each
(dataset, protocol, method, region): the rows are grouped once, so the cost is linear in the number
of rows, not rows x table cells.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np

from depthlab.evaluation.metrics import METRIC_NAMES

__all__ = ["aggregate", "summarize_group"]


def _finite_mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def summarize_group(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of every metric over the rows where it is finite, ``n_ok`` and ``seconds_per_sample``.

    ``n_ok`` is the largest number of finite values of any metric (images scored).
    """
    summary: dict[str, Any] = {"n_ok": 0}
    for name in METRIC_NAMES:
        values = [r[name] for r in rows if math.isfinite(r.get(name, math.nan))]
        summary[name] = _finite_mean(values)
        summary["n_ok"] = max(summary["n_ok"], len(values))
    timings = [r["seconds"] for r in rows if math.isfinite(r.get("seconds", math.nan))]
    summary["seconds_per_sample"] = _finite_mean(timings)
    return summary


def aggregate(
    per_sample: Iterable[Mapping[str, Any]],
    failures: Iterable[Mapping[str, Any]],
    datasets: Sequence[str],
    protocols: Sequence[str],
    methods: Sequence[str],
    regions: Sequence[str],
) -> list[dict[str, Any]]:
    """One summary row per (dataset, protocol, method, region), in that nesting order.

    Args:
        per_sample: rows with ``dataset``, ``protocol``, ``method``, ``region``, ``status`` and
            the metrics; only ``status == "ok"`` rows are averaged.
        failures: failed items with ``dataset``, ``protocol``, ``method`` (counted as ``n_failed``).
        datasets: dataset labels of the run.
        protocols: mask protocols of the run.
        methods: method names of the run.
        regions: scored regions of the run.

    Returns:
        rows with the four keys, ``n_ok``, ``n_failed``, the mean metrics and ``seconds_per_sample``.
    """
    groups: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in per_sample:
        if row["status"] == "ok":
            groups[(row["dataset"], row["protocol"], row["method"], row.get("region", ""))].append(row)
    n_failed = Counter((f["dataset"], f["protocol"], f["method"]) for f in failures)
    rows = []
    for dataset, protocol, method, region in product(datasets, protocols, methods, regions):
        key = {"dataset": dataset, "protocol": protocol, "method": method, "region": region}
        summary = summarize_group(groups.get((dataset, protocol, method, region), []))
        rows.append(
            {**key, "n_ok": summary.pop("n_ok"), "n_failed": n_failed[(dataset, protocol, method)], **summary}
        )
    return rows
