import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from depthlab.cli import main

# `auto` must not find real weights on the test machine (root conftest)
pytestmark = pytest.mark.usefixtures("no_weights")


def test_single_image_all_formats(tmp_path, capsys, write_item):
    depth = write_item(tmp_path / "in", "a", 0)
    out = tmp_path / "out"
    status = main(
        [
            "complete",
            str(tmp_path / "in" / "a_colors.png"),
            "--depth-scale",
            "1000",
            "--out",
            str(out),
            "--format",
            "npy,png16,color,panel",
            "--colorbar",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "method guided:" in printed and "no DepthLab weights" in printed
    result = np.load(out / "a_colors_depth.npy")
    known = depth > 0
    assert np.array_equal(result[known], depth[known] / np.float32(1000))
    png = np.asarray(Image.open(out / "a_colors_depth.png"))
    assert png.dtype == np.uint16 and np.array_equal(png[known], depth[known])
    assert (out / "a_colors_color.png").is_file() and (out / "a_colors_panel.png").is_file()
    # a second run skips; --overwrite recomputes
    assert (
        main(
            [
                "complete",
                str(tmp_path / "in" / "a_colors.png"),
                "--depth-scale",
                "1000",
                "--out",
                str(out),
                "--format",
                "npy",
            ]
        )
        == 0
    )
    assert "1 already done" in capsys.readouterr().out


def test_batch_with_corrupt_file_then_resume(tmp_path, capsys, write_item):
    inputs = tmp_path / "in"
    for i, stem in enumerate(["a", "b", "c"]):
        write_item(inputs / ("sub" if stem == "c" else ""), stem, i)
    (inputs / "b_colors.png").write_bytes(b"this is not a png")
    out = tmp_path / "out"
    args = [
        "complete",
        str(inputs),
        "--depth-scale",
        "1000",
        "--out",
        str(out),
        "--method",
        "linear",
        "--quiet",
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "2 completed, 0 already done (skipped), 1 failed" in captured.out
    assert "b_colors.png" in captured.err
    assert (out / "a_colors_depth.npy").is_file() and (out / "sub" / "c_colors_depth.npy").is_file()
    before = (out / "a_colors_depth.npy").stat().st_mtime_ns
    write_item(inputs, "b", 1)  # repaired
    assert main(args) == 0
    assert "1 completed, 2 already done (skipped), 0 failed" in capsys.readouterr().out
    assert (out / "a_colors_depth.npy").stat().st_mtime_ns == before
    assert (out / "b_colors_depth.npy").is_file()


def test_glob_depth_folder_and_mask_conventions(tmp_path, capsys):
    images, depths, masks = tmp_path / "rgb", tmp_path / "depth", tmp_path / "masks"
    rng = np.random.default_rng(3)
    images.mkdir()
    depths.mkdir()
    masks.mkdir()
    Image.fromarray(rng.integers(0, 255, (16, 20, 3), dtype=np.uint8)).save(images / "x.jpg")
    full = rng.uniform(1, 2, (16, 20)).astype(np.float32)
    np.save(depths / "x.npy", full)
    known = np.zeros((16, 20), bool)
    known[::3, ::3] = True
    Image.fromarray((known * 255).astype(np.uint8)).save(masks / "x_mask.png")
    results = {}
    for convention, mask_dir in (("known", masks), ("fill", tmp_path / "fill")):
        if convention == "fill":
            mask_dir.mkdir()
            Image.fromarray(((~known) * 255).astype(np.uint8)).save(mask_dir / "x.png")
        out = tmp_path / f"out_{convention}"
        assert (
            main(
                [
                    "complete",
                    str(images / "*.jpg"),
                    "--depth",
                    str(depths),
                    "--mask",
                    str(mask_dir),
                    "--mask-convention",
                    convention,
                    "--method",
                    "nearest",
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        results[convention] = np.load(out / "x_depth.npy")
    assert np.array_equal(results["known"], results["fill"])
    assert np.array_equal(results["known"][known], full[known])
    assert not np.array_equal(results["known"], full)  # unknown pixels were really re-filled


def test_points_and_manifest(tmp_path):
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    (tmp_path / "pts.csv").write_text("u,v,depth\n1,1,2.0\n10,8,3.0\n5,5,2.5\n")
    (tmp_path / "list.csv").write_text("image,points\nimg.png,pts.csv\n")
    out = tmp_path / "out"
    assert (
        main(["complete", "--manifest", str(tmp_path / "list.csv"), "--method", "linear", "--out", str(out)])
        == 0
    )
    result = np.load(out / "img_depth.npy")
    assert result[1, 1] == 2.0 and result[8, 10] == 3.0 and result.shape == (10, 12)


def test_user_errors_exit_2_without_traceback(tmp_path, capsys, write_item):
    write_item(tmp_path, "a", 0)
    image = str(tmp_path / "a_colors.png")
    assert main(["complete", image, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--depth-scale" in err and "Traceback" not in err
    assert main(["complete", str(tmp_path / "nothing*.png")]) == 2
    with pytest.raises(SystemExit) as error:  # argparse rejects the value itself
        main(["complete", image, "--depth-scale", "1000", "--format", "png16,jpeg"])
    assert error.value.code == 2 and "unknown format(s) jpeg" in capsys.readouterr().err
    assert main(["complete"]) == 2
    assert main(["complete", image, "--format", "png16", "--out", str(tmp_path / "o")]) == 2
    assert "--out-scale" in capsys.readouterr().err


def test_info_runs(capsys):
    assert main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "DEPTHLAB_CHECKPOINTS" in printed and "numpy" in printed and "found:" in printed


def test_console_entry_subprocess(tmp_path, write_item):
    write_item(tmp_path, "a", 0)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "depthlab.cli",
            "complete",
            str(tmp_path / "a_colors.png"),
            "--depth-scale",
            "1000",
            "--method",
            "nearest",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "method nearest" in proc.stdout
    assert (tmp_path / "out" / "a_colors_color.png").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "depthlab.cli", "complete", str(tmp_path / "missing.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_convert_then_complete_with_depthlab(tmp_path, capsys, monkeypatch, write_item):
    pytest.importorskip("torch")
    monkeypatch.undo()  # the real weight search: --checkpoints is looked at first
    from depthlab.pipeline import DepthLabPipeline

    if not hasattr(DepthLabPipeline, "build_tiny"):
        pytest.skip("DepthLabPipeline.build_tiny not available yet")
    DepthLabPipeline.build_tiny(seed=0).save_pretrained(tmp_path / "tiny")
    assert main(["convert", str(tmp_path / "tiny"), str(tmp_path / "tiny16"), "--fp16"]) == 0
    assert main(["convert", str(tmp_path / "tiny"), str(tmp_path / "tiny16")]) == 2  # not empty
    assert "--overwrite" in capsys.readouterr().err
    write_item(tmp_path / "in", "a", 0)
    args = [
        "complete",
        str(tmp_path / "in" / "a_colors.png"),
        "--depth-scale",
        "1000",
        "--checkpoints",
        str(tmp_path / "tiny16"),
        "--steps",
        "2",
        "--strength",
        "0.5",
        "--processing-resolution",
        "32",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--format",
        "npy",
    ]
    assert main(args + ["--out", str(tmp_path / "o1")]) == 0
    assert "method depthlab: DepthLab weights were found" in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "o2")]) == 0
    first = np.load(tmp_path / "o1" / "a_colors_depth.npy")
    second = np.load(tmp_path / "o2" / "a_colors_depth.npy")
    assert first.shape == (24, 32) and np.array_equal(first, second)  # seeded
    assert np.isfinite(first).all()
