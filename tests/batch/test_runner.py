import json

import pytest

from depthlab.batch import (
    BatchOptions,
    WorkListSpec,
    collect_items,
    item_seed,
    merge_results,
    run_batch,
    shard_items,
)
from depthlab.cli import main


def _args(folder, out, *extra):
    return ["complete", str(folder), "--depth-scale", "1000", "--out", str(out), "--quiet", *extra]


def test_rerun_with_other_settings_never_mixes(tmp_path, write_item, capsys):
    """issue 9 item 5: other method + more formats -> skipped with the difference named, nothing written."""
    for i, stem in enumerate(["a", "b"]):
        write_item(tmp_path / "in", stem, i)
    out = tmp_path / "out"
    assert main(_args(tmp_path / "in", out, "--method", "linear", "--format", "npy")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    status = main(_args(tmp_path / "in", out, "--method", "nearest", "--format", "npy,color,panel"))
    captured = capsys.readouterr()
    assert status == 1
    assert (
        "2 skipped: outputs exist from a run with method: 'linear' -> 'nearest'; --overwrite to recompute"
        in captured.err
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no colour/panel next to old npy
    # --overwrite recomputes everything with the new settings
    assert (
        main(_args(tmp_path / "in", out, "--method", "nearest", "--format", "npy,color,panel", "--overwrite"))
        == 0
    )
    assert (out / "a_colors_panel.png").is_file()
    rows = [json.loads(line) for line in (out / "depthlab-results.jsonl").read_text().splitlines()]
    assert [r["item"] for r in rows] == ["a_colors", "b_colors"]
    assert all(r["method"] == "nearest" and r["formats"] == ["color", "npy", "panel"] for r in rows)


def test_same_settings_more_formats_writes_only_the_missing(tmp_path, write_item, capsys):
    write_item(tmp_path / "in", "a", 0)
    image, out = tmp_path / "in" / "a_colors.png", tmp_path / "out"
    assert main(_args(image, out, "--method", "linear", "--format", "npy")) == 0
    npy_before = (out / "a_colors_depth.npy").stat().st_mtime_ns
    capsys.readouterr()
    assert main(_args(image, out, "--method", "linear", "--format", "npy,color")) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "a_colors_color.png" in printed and "a_colors_depth.npy" not in printed
    assert (out / "a_colors_depth.npy").stat().st_mtime_ns == npy_before
    # a colour setting changed: the colour picture is not replaced in silence
    assert main(_args(image, out, "--method", "linear", "--format", "npy,color", "--cmap", "viridis")) == 1
    assert "color cmap: 'Spectral' -> 'viridis'" in capsys.readouterr().err


def test_out_is_checked_before_any_work(tmp_path, write_item, capsys):
    """issue 9 item 9: --out below a file fails at once, one line, exit 2, nothing computed."""
    write_item(tmp_path / "in", "a", 0)
    (tmp_path / "file").write_text("x")
    status = main(_args(tmp_path / "in", tmp_path / "file" / "out", "--method", "guided"))
    err = capsys.readouterr().err
    assert status == 2 and "--out" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(_args(tmp_path / "in", tmp_path / "file", "--method", "guided")) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_corrupt_file_in_the_middle_is_recorded_and_retried(tmp_path, write_item):
    for i, stem in enumerate(["a", "b", "c"]):
        write_item(tmp_path / "in", stem, i)
    (tmp_path / "in" / "b_depth.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    items = collect_items(WorkListSpec(images=[str(tmp_path / "in")], out=str(out)))
    options = BatchOptions(depth_scale=1000, progress=False)
    report = run_batch(items, "linear", options, out)
    assert [r["item"] for r in report.completed] == ["a_colors", "c_colors"]
    assert [r["item"] for r in report.failed] == ["b_colors"] and "b_depth.png" in report.failed[0]["error"]
    assert not list(out.glob("b_colors*"))
    write_item(tmp_path / "in", "b", 1)
    report = run_batch(items, "linear", options, out)
    assert [r["item"] for r in report.completed] == ["b_colors"] and report.skipped == {"done": 2}


def test_shards_give_the_single_process_result_bit_for_bit(tmp_path, write_item, tree, records):
    """Seeds follow the item, not the worker: 3 shards of a DepthLab run == one process."""
    torch = pytest.importorskip("torch")
    from depthlab.pipeline import DepthLabPipeline

    torch.set_num_threads(1)
    for i in range(5):
        write_item(tmp_path / "in", f"f{i}", i)
    pipeline = DepthLabPipeline.build_tiny(seed=0)
    options = BatchOptions(
        depth_scale=1000,
        formats=("npy", "png16"),
        progress=False,
        method_options={"num_inference_steps": 2, "processing_resolution": 32, "strength": 1.0},
    )
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    items = collect_items(WorkListSpec(images=[str(tmp_path / "in")], out=str(single)))
    run_batch(items, "depthlab", options, single, pipeline=pipeline)
    items = collect_items(WorkListSpec(images=[str(tmp_path / "in")], out=str(sharded)))
    for rank in (2, 0, 1):
        report = run_batch(items, "depthlab", options, sharded, shard=(rank, 3), pipeline=pipeline)
        assert len(report.completed) == len(shard_items(items, rank, 3))
    merge_results(sharded)
    assert tree(single) == tree(sharded) and len(tree(single)) == 10
    strip = lambda rs: {k: {f: v for f, v in r.items() if f != "seconds"} for k, r in rs.items()}  # noqa: E731
    assert strip(records(single)) == strip(records(sharded))
    # different items really got different noise (an all-known pixel aside, the fills differ)
    assert item_seed(0, "f0_colors") != item_seed(0, "f1_colors")


def test_shard_items_is_the_split_between_processes_rule():
    assert [shard_items(list(range(7)), r, 3) for r in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    with pytest.raises(ValueError, match="shard"):
        shard_items([1], 3, 2)
    accelerate = pytest.importorskip("accelerate")
    state = accelerate.PartialState()  # one process: the whole list
    with state.split_between_processes(list(range(7))) as mine:
        assert list(mine) == shard_items(list(range(7)), 0, 1)


def test_single_image_error_is_one_line_exit_2(tmp_path, write_item, capsys):
    write_item(tmp_path, "a", 0)
    (tmp_path / "a_depth.png").write_bytes(b"broken")
    status = main(
        [
            "complete",
            str(tmp_path / "a_colors.png"),
            "--depth-scale",
            "1000",
            "--method",
            "linear",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and "a_depth.png" in err and "Traceback" not in err
    rows = [json.loads(x) for x in (tmp_path / "o" / "depthlab-results.jsonl").read_text().splitlines()]
    assert rows[0]["status"] == "failed" and "a_depth.png" in rows[0]["error"]
