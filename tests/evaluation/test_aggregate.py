import math

import numpy as np

from depthlab.evaluation.aggregate import aggregate
from depthlab.evaluation.metrics import METRIC_NAMES


def _row(dataset, protocol, method, region, value, status="ok", seconds=1.0):
    row = {"dataset": dataset, "protocol": protocol, "method": method, "region": region, "status": status}
    if status == "ok":
        row.update({name: value for name in METRIC_NAMES}, seconds=seconds)
    return row


def test_means_per_cell_counts_and_failures():
    rows = [
        _row("d", "p", "a", "unknown", 1.0, seconds=2.0),
        _row("d", "p", "a", "unknown", 3.0, seconds=math.nan),  # a reused prediction: no timing
        _row("d", "p", "a", "all", 5.0),
        _row("d", "p", "b", "unknown", math.nan),  # a region without pixels
        _row("d", "q", "a", "unknown", 7.0),
        {"dataset": "d", "protocol": "p", "method": "b", "region": "", "status": "failed"},
    ]
    failures = [{"dataset": "d", "protocol": "p", "method": "b"}]
    result = aggregate(rows, failures, ["d"], ["p", "q"], ["a", "b"], ["unknown", "all"])
    assert [(r["protocol"], r["method"], r["region"]) for r in result] == [
        ("p", "a", "unknown"), ("p", "a", "all"), ("p", "b", "unknown"), ("p", "b", "all"),
        ("q", "a", "unknown"), ("q", "a", "all"), ("q", "b", "unknown"), ("q", "b", "all"),
    ]  # fmt: skip
    cell = result[0]
    assert cell["abs_rel"] == 2.0 and cell["n_ok"] == 2 and cell["seconds_per_sample"] == 2.0
    assert result[1]["rmse"] == 5.0 and result[1]["n_ok"] == 1
    assert result[2]["n_ok"] == 0 and math.isnan(result[2]["delta1"]) and result[2]["n_failed"] == 1
    assert result[4]["mae"] == 7.0 and result[4]["n_failed"] == 0
    assert math.isnan(result[7]["rmse"]) and result[7]["n_ok"] == 0


def test_one_pass_equals_a_scan_per_cell():
    rng = np.random.default_rng(0)
    cells = [
        (d, p, m, r) for d in "xy" for p in ("p1", "p2") for m in ("a", "b", "c") for r in ("unknown", "all")
    ]
    rows = [_row(*cells[i], float(rng.uniform(0, 1))) for i in rng.integers(0, len(cells), 300)]
    result = aggregate(rows, [], ["x", "y"], ["p1", "p2"], ["a", "b", "c"], ["unknown", "all"])
    for summary in result:
        key = (summary["dataset"], summary["protocol"], summary["method"], summary["region"])
        values = [r["rmse"] for r in rows if (r["dataset"], r["protocol"], r["method"], r["region"]) == key]
        assert summary["n_ok"] == len(values)
        if values:
            assert summary["rmse"] == float(np.mean(values))
        else:
            assert math.isnan(summary["rmse"])
