import csv
import json

import numpy as np
import pytest
from PIL import Image

from depthlab.config import load_config
from depthlab.evaluation import runner


def make_folder_dataset(root, n=3, size=(24, 32), corrupt=None):
    rng = np.random.default_rng(0)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / "rgb" / f"s{i}.png")
        depth = (1.0 + 0.05 * xx + 0.02 * yy + i).astype(np.float32)
        np.save(root / "depth" / f"s{i}.npy", depth)
    if corrupt is not None:
        (root / "depth" / f"s{corrupt}.npy").write_bytes(b"not a numpy file")
    return root


def config_for(tmp_path, root, **kw):
    base = dict(
        dataset="folder",
        root=str(root),
        protocols=["ratio:10", "holes:0.3"],
        methods=["nearest", "linear"],
        out=str(tmp_path / "out"),
        num_figures=2,
    )
    base.update(kw)
    return runner.merge_config({}, base)


def test_runner_end_to_end_outputs_and_values(tmp_path):
    root = make_folder_dataset(tmp_path / "data")
    summary = runner.run_evaluation(config_for(tmp_path, root), show_progress=False)
    out = tmp_path / "out"
    for name in ("per_sample.csv", "summary.json", "table.md", "config.yaml"):
        assert (out / name).is_file(), name
    assert (out / "figures" / "ratio_10" / "linear.png").is_file()
    assert len(list((out / "predictions" / "holes_0.3" / "nearest").glob("*.npy"))) == 3
    rows = list(csv.DictReader(open(out / "per_sample.csv")))
    assert {r["status"] for r in rows} == {"ok"}
    assert len(rows) == 3 * 2 * 2 * 2  # samples x protocols x methods x regions
    # a planar depth is reproduced almost exactly by linear interpolation inside the hull
    lin = [
        r
        for r in summary["results"]
        if r["method"] == "linear" and r["protocol"] == "ratio:10" and r["region"] == "unknown"
    ][0]
    near = [
        r
        for r in summary["results"]
        if r["method"] == "nearest" and r["protocol"] == "ratio:10" and r["region"] == "unknown"
    ][0]
    assert lin["abs_rel"] < near["abs_rel"] and lin["n_ok"] == 3
    # summary mean == mean of per-sample values
    per = [
        float(r["abs_rel"])
        for r in rows
        if r["method"] == "linear" and r["protocol"] == "ratio:10" and r["region"] == "unknown"
    ]
    assert lin["abs_rel"] == pytest.approx(np.mean(per), rel=1e-5)
    table = (out / "table.md").read_text()
    assert "| `linear` |" in table and "10% AbsRel" in table and "holes 30%" in table
    saved = json.loads((out / "summary.json").read_text())
    assert saved["config"]["methods"] == ["nearest", "linear"] and saved["failures"] == []
    # masks are the documented ones: protocol_rng(seed, sample_id, protocol)
    from depthlab import masks

    mask = np.load(out / "masks" / "ratio_10" / "s1.npy")
    valid = np.ones((24, 32), bool)
    np.testing.assert_array_equal(
        mask, masks.make_mask("ratio:10", valid, masks.protocol_rng(0, "s1", "ratio:10"))
    )


def test_runner_resumes_from_saved_predictions(tmp_path):
    root = make_folder_dataset(tmp_path / "data", n=2)
    config = config_for(tmp_path, root, protocols=["ratio:10"], methods=["nearest"], num_figures=0)
    runner.run_evaluation(config, show_progress=False)
    calls = []

    def must_not_run(rgb, depth, known):
        calls.append(1)
        raise AssertionError("prediction should have been reused")

    pred_path = tmp_path / "out" / "predictions" / "ratio_10" / "nearest" / "s0.npy"
    np.save(pred_path, np.full((24, 32), 5.0, np.float32))  # a saved prediction is what gets scored
    summary = runner.run_evaluation(config, methods={"nearest": must_not_run}, show_progress=False)
    assert not calls and not summary["failures"]
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_sample.csv")))
    s0 = [r for r in rows if r["sample_id"] == "s0" and r["region"] == "all"][0]
    assert s0["reused"] == "True"
    depth = np.load(root / "depth" / "s0.npy")
    assert float(s0["mae"]) == pytest.approx(np.abs(5.0 - depth).mean(), rel=1e-4)


def test_runner_reports_corrupt_sample_and_failing_method(tmp_path):
    root = make_folder_dataset(tmp_path / "data", n=3, corrupt=1)

    def flaky(rgb, depth, known):
        if depth[known].min() > 2.5:  # fails on sample s2 only
            raise RuntimeError("boom")
        return np.where(known, depth, depth[known].mean()).astype(np.float32)

    config = config_for(tmp_path, root, protocols=["ratio:10"], methods=["nearest"], num_figures=1)
    config.methods = ["nearest", "flaky"]
    with pytest.raises(ValueError, match="unknown method"):
        config.validate()
    summary = runner.run_evaluation(config, methods={"flaky": flaky}, show_progress=False)
    failures = summary["failures"]
    assert any(f["sample_id"] == "s1" and f["stage"] == "load" for f in failures)
    assert any(f["sample_id"] == "s2" and f["method"] == "flaky" and "boom" in f["error"] for f in failures)
    ok = [r for r in summary["results"] if r["method"] == "nearest" and r["region"] == "unknown"][0]
    assert ok["n_ok"] == 2 and ok["n_failed"] == 1
    rows = list(csv.DictReader(open(tmp_path / "out" / "per_sample.csv")))
    assert sum(r["status"] == "failed" for r in rows) == 3


def test_sensor_protocol_uses_dataset_known_depth(tmp_path):
    root = make_folder_dataset(tmp_path / "data", n=1)
    (root / "known").mkdir()
    depth = np.load(root / "depth" / "s0.npy")
    known = np.zeros_like(depth)
    known[::4, ::4] = depth[::4, ::4]
    np.save(root / "known" / "s0.npy", known)
    config = config_for(tmp_path, root, protocols=["sensor"], methods=["nearest"], num_figures=0)
    summary = runner.run_evaluation(config, show_progress=False)
    mask = np.load(tmp_path / "out" / "masks" / "sensor" / "s0.npy")
    np.testing.assert_array_equal(mask, known > 0)
    assert not summary["failures"]


def test_config_layering_and_errors(tmp_path):
    (tmp_path / "base.yaml").write_text("protocols: [ratio:5]\nmethods: [nearest]\ntable_metrics: [rmse]\n")
    (tmp_path / "child.yaml").write_text("base_config: base.yaml\nmethods: [linear, nearest]\nseed: 3\n")
    data = load_config(tmp_path / "child.yaml", kind="eval")
    assert data == {
        "protocols": ["ratio:5"],
        "methods": ["linear", "nearest"],
        "table_metrics": ["rmse"],
        "seed": 3,
    }
    config = runner.merge_config(data, {"dataset": "folder", "root": "x", "seed": 7, "limit": None})
    assert config.seed == 7 and config.datasets[0]["name"] == "folder" and config.protocols == ["ratio:5"]
    with pytest.raises(ValueError, match="unknown config key"):
        runner.merge_config({"nope": 1}, {"dataset": "folder", "root": "x"})
    with pytest.raises(ValueError, match="protocol"):
        runner.merge_config({}, {"dataset": "folder", "root": "x", "protocols": ["ratio"]})
    with pytest.raises(ValueError, match="dataset"):
        runner.merge_config({}, {"protocols": ["ratio:5"]})


def test_protocol_labels_and_markdown_bold_best():
    assert runner.protocol_label("ratio:5") == "5%"
    assert runner.protocol_label("points:500") == "500 pts"
    assert runner.protocol_label("holes:0.3") == "holes 30%"
    rows = [
        {
            "dataset": "d",
            "protocol": "ratio:5",
            "method": "a",
            "region": "unknown",
            "rmse": 0.5,
            "delta1": 0.9,
        },
        {
            "dataset": "d",
            "protocol": "ratio:5",
            "method": "b",
            "region": "unknown",
            "rmse": 0.4,
            "delta1": 0.8,
        },
    ]
    table = runner.markdown_table(rows, ["a", "b"], [("d", "ratio:5")], ["rmse", "delta1"], "unknown")
    assert "| `a` | 0.500 | **0.900** |" in table and "| `b` | **0.400** | 0.800 |" in table
