import csv

import numpy as np
import plyfile
import pytest
from PIL import Image

from depthlab.applications.common import write_all_or_nothing
from depthlab.applications.lidar import (
    LidarConfig,
    complete_lidar,
    find_frames,
    read_camera_points,
    run_lidar,
)
from depthlab.batch import load_results
from depthlab.geometry import Camera, parse_kitti_calib, scan_to_depth


def test_object_layout_batch_resume_and_failures(tmp_path, rng, kitti):
    base = tmp_path / "training"
    for frame in ("000001", "000002", "000003"):
        kitti.object_frame(base, frame, rng)
    (base / "velodyne" / "000003.bin").write_bytes(b"\0" * 20)  # not a whole number of points
    config = LidarConfig(images=[str(tmp_path)], out=str(tmp_path / "out"), method="linear",
                         formats=("npy", "color", "ply", "glb", "sparse"), progress=False)  # fmt: skip
    report = run_lidar(config)
    assert report.done == 2 and [key for key, _ in report.failures] == ["000003"]
    assert "000003.bin: 20 bytes is not a whole number of points" in report.failures[0][1]
    dense = np.load(tmp_path / "out" / "000001_depth.npy")
    sparse = np.load(tmp_path / "out" / "000001_sparse.npy")
    known = sparse > 0
    assert dense.shape == (80, 100) and (dense > 0).all() and known.sum() > 500
    np.testing.assert_allclose(dense[known], sparse[known], rtol=1e-6)  # the fill keeps the points
    ply = plyfile.PlyData.read(str(tmp_path / "out" / "000001_points.ply"))
    assert ply["vertex"].count == 80 * 100
    # every frame is recorded in the batch results manifest
    records = load_results(tmp_path / "out")
    assert (
        sorted(records) == ["000001", "000002", "000003"] and report.manifest.name == "depthlab-results.jsonl"
    )
    assert records["000001"]["status"] == "ok" and records["000003"]["status"] == "failed"
    assert "000001_points.ply" in records["000001"]["outputs"] and records["000003"]["outputs"] == []
    assert "not a whole number of points" in records["000003"]["error"]
    assert not list((tmp_path / "out").glob("000003*"))  # the failed frame left no file
    # a second run skips what is done and retries the failure
    again = run_lidar(config)
    assert (
        again.done == 0
        and again.skipped == 2
        and again.skip_reasons == {"done": 2}
        and len(again.failures) == 1
    )
    # the scan is repaired: only that frame runs
    kitti.scan(rng).tofile(base / "velodyne" / "000003.bin")
    fixed = run_lidar(config)
    assert fixed.done == 1 and list(fixed.outputs) == ["000003"] and not fixed.failures
    assert load_results(tmp_path / "out")["000003"]["status"] == "ok"
    # a lost output is written again, alone; the other files of the frame stay untouched
    (tmp_path / "out" / "000001_color.png").unlink()
    before = (tmp_path / "out" / "000001_depth.npy").stat().st_mtime_ns
    assert run_lidar(config).done == 1
    assert load_results(tmp_path / "out")["000001"]["written"] == ["000001_color.png"]
    assert (tmp_path / "out" / "000001_depth.npy").stat().st_mtime_ns == before
    # other settings never mix with what exists: skipped, the difference named; overwrite recomputes
    other = LidarConfig(**{**config.__dict__, "method": "nearest"})
    skipped = run_lidar(other)
    assert skipped.done == 0 and skipped.skip_reasons == {
        "outputs exist from a run with method: 'linear' -> 'nearest'": 3
    }
    assert run_lidar(LidarConfig(**{**other.__dict__, "overwrite": True})).done == 3
    assert {r["method"] for r in load_results(tmp_path / "out").values()} == {"nearest"}


def test_holdout_metrics_are_recorded_and_reported_on_resume(tmp_path, rng, kitti):
    base = tmp_path / "training"
    for frame in ("000001", "000002"):
        kitti.object_frame(base, frame, rng)
    config = LidarConfig(images=[str(base)], out=str(tmp_path / "out"), method="linear", holdout="ratio:90",
                         formats=("npy",), progress=False)  # fmt: skip
    first = run_lidar(config)
    assert first.done == 2 and first.metrics["000001"]["n_pixels"] > 0
    records = load_results(tmp_path / "out")
    assert records["000002"]["metrics"] == pytest.approx(first.metrics["000002"])
    assert (
        records["000001"]["settings"]["holdout"] == "ratio:90" and records["000001"]["settings"]["seed"] == 0
    )
    again = run_lidar(config)
    assert again.done == 0 and sorted(again.metrics) == sorted(first.metrics)
    for key, metrics in first.metrics.items():
        assert again.metrics[key] == pytest.approx(metrics)
    # another hold-out seed draws another split: its frames are not "done"
    reseeded = run_lidar(LidarConfig(**{**config.__dict__, "seed": 1}))
    assert reseeded.done == 0 and "seed: 0 -> 1" in next(iter(reseeded.skip_reasons))


def test_a_frame_is_written_all_or_nothing(tmp_path):
    def broken(tmp):
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(OSError, match="No space"):
        write_all_or_nothing(
            {tmp_path / "a.txt": lambda tmp: tmp.write_text("a"), tmp_path / "b.txt": broken}
        )
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "b.txt").write_text("old")
    with pytest.raises(FileExistsError, match="b.txt"):
        write_all_or_nothing(
            {tmp_path / "a.txt": lambda tmp: tmp.write_text("a"), tmp_path / "b.txt": broken}
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]


def test_raw_layout(tmp_path, rng, kitti):
    date = tmp_path / "2011_09_26"
    drive = date / "2011_09_26_drive_0001_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    (drive / "velodyne_points" / "data").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(
        drive / "image_02" / "data" / "0000000000.png"
    )
    scan = kitti.scan(rng)
    scan.tofile(drive / "velodyne_points" / "data" / "0000000000.bin")
    (date / "calib_cam_to_cam.txt").write_text(
        "R_rect_00: 1 0 0 0 1 0 0 0 1\nP_rect_02: 100 0 50 0 0 100 40 0 0 0 1 0\n"
    )
    (date / "calib_velo_to_cam.txt").write_text(
        "calib_time: 15-Mar-2012 11:37:16\nR: 0 -1 0 0 0 -1 1 0 0\nT: 0 0 0\n"
    )
    config = LidarConfig(
        images=[str(date)], out=str(tmp_path / "out"), method="nearest", formats=("sparse",), progress=False
    )
    frames = find_frames(config)
    assert [f.key for f in frames] == ["2011_09_26_drive_0001_sync/0000000000"]
    assert run_lidar(config).done == 1
    sparse = np.load(tmp_path / "out" / "2011_09_26_drive_0001_sync" / "0000000000_sparse.npy")
    assert np.array_equal(sparse, scan_to_depth(scan, parse_kitti_calib(kitti.calib), 100, 80))


def test_camera_frame_points_with_intrinsics(tmp_path, rng):
    image = tmp_path / "view.png"
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(image)
    camera = Camera(50.0, 50.0, 31.5, 23.5, 64, 48)
    z = rng.uniform(2, 4, 400)
    u, v = rng.uniform(0, 63, 400), rng.uniform(0, 47, 400)
    points = np.c_[(u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z]
    with open(tmp_path / "points.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "z"])
        writer.writerows(points.tolist())
    assert np.allclose(read_camera_points(tmp_path / "points.csv"), points)
    config = LidarConfig(images=[str(image)], points=str(tmp_path / "points.csv"), intrinsics="50,50,31.5,23.5",
                         out=str(tmp_path / "out"), method="linear", formats=("npy", "sparse"), progress=False)  # fmt: skip
    assert run_lidar(config).done == 1
    sparse = np.load(tmp_path / "out" / "view_sparse.npy")
    rows, cols = np.round(v).astype(int), np.round(u).astype(int)
    assert (sparse[rows, cols] > 0).all() and (sparse > 0).sum() <= 400
    with pytest.raises(ValueError, match="the intrinsics are for a 640x480 image but the image is 64x48"):
        run_lidar(LidarConfig(images=[str(image)], points=str(tmp_path / "points.csv"),
                              intrinsics=_write_json(tmp_path), out=str(tmp_path / "o2"), method="linear"))  # fmt: skip
    with pytest.raises(ValueError, match="--points needs --intrinsics"):
        find_frames(LidarConfig(images=[str(image)], points=str(tmp_path / "points.csv")))


def _write_json(tmp_path):
    path = tmp_path / "k.json"
    path.write_text('{"fx": 500, "fy": 500, "cx": 319.5, "cy": 239.5, "width": 640, "height": 480}')
    return str(path)


@pytest.mark.parametrize("method", ["lidar", "nearest"])
def test_holdout_scores_what_the_evaluation_harness_scores(tmp_path, kitti_object_root, method):
    from depthlab.evaluation.runner import EvalConfig, run_evaluation

    # two frames (the real one under two names: each name draws its own hold-out split)
    base = tmp_path / "training"
    for sub, suffix in (("image_2", ".png"), ("velodyne", ".bin"), ("calib", ".txt")):
        (base / sub).mkdir(parents=True)
        for frame in ("000000", "000042"):
            (base / sub / f"{frame}{suffix}").symlink_to(kitti_object_root / sub / f"000000{suffix}")
    report = run_lidar(LidarConfig(images=[str(base)], out=str(tmp_path / "lidar"), method=method,
                                   holdout="ratio:90", formats=("npy",), progress=False))  # fmt: skip
    assert sorted(report.metrics) == ["000000", "000042"]
    config = EvalConfig(datasets=[{"name": "kitti_object", "root": str(base)}], protocols=["ratio:90"],
                        methods=[method], regions=["unknown"], out=str(tmp_path / "eval"), num_figures=0)  # fmt: skip
    run_evaluation(config, show_progress=False)
    with open(tmp_path / "eval" / "per_sample.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["region"] == "unknown"]
    assert len(rows) == 2
    for row in rows:
        ours = report.metrics[row["sample_id"]]
        assert int(float(row["n_pixels"])) == int(ours["n_pixels"]) > 1500
        for name in ("abs_rel", "rmse", "mae", "delta1"):
            assert float(row[name]) == pytest.approx(ours[name], rel=1e-5), name
    assert report.metrics["000000"]["rmse"] != report.metrics["000042"]["rmse"]  # two different splits


def test_depthlab_runs_with_resize_mode_auto(rng, kitti, tiny_method):
    import torch

    calib = parse_kitti_calib(kitti.calib)
    sparse = scan_to_depth(kitti.scan(rng, 400), calib, 100, 80)
    rgb = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    output = complete_lidar(rgb, sparse, method=tiny_method,
                            depthlab_options={"num_inference_steps": 2, "strength": 0.5, "processing_resolution": 32})  # fmt: skip
    assert output.method == "depthlab" and output.depth.shape == (80, 100)
    # resize_mode="auto" saw that a nearest resize would drop sparse points and preserved them
    assert output.info["resize_mode"] == ["preserve"]
    assert not torch.is_tensor(output.depth)


def test_picture_outputs_are_marked_as_depthlab_results(tmp_path, rng, kitti):
    from depthlab import io

    kitti.object_frame(tmp_path / "training", "000001", rng)
    config = LidarConfig(images=[str(tmp_path / "training")], out=str(tmp_path / "out"), method="nearest",
                         formats=("png16", "color", "panel"), progress=False)  # fmt: skip
    assert run_lidar(config).done == 1
    for name in ("000001_depth.png", "000001_color.png", "000001_panel.png"):
        assert io.is_depthlab_output(tmp_path / "out" / name), name
    assert not io.is_depthlab_output(tmp_path / "training" / "image_2" / "000001.png")
