import json

import numpy as np
from PIL import Image

from depthlab.cli import main


def make_nyu_png(root, n=2):
    rng = np.random.default_rng(1)
    folder = root / "nyu2_test"
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:480, 0:640]
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(
            folder / f"{i:05d}_colors.png"
        )
        depth = (1500 + 3 * xx + 2 * yy + 100 * i).astype(np.uint16)
        Image.fromarray(depth).save(folder / f"{i:05d}_depth.png")
    return root


def test_eval_cli_end_to_end(tmp_path, capsys):
    root = make_nyu_png(tmp_path / "nyu")
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "--dataset",
            "nyuv2",
            "--root",
            str(root),
            "--protocol",
            "points:200",
            "--method",
            "nearest",
            "--out",
            str(out),
            "--limit",
            "1",
            "--seed",
            "3",
            "--num-figures",
            "1",
            "--no-progress",
            "--table-metric",
            "rmse",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "200 pts RMSE" in printed and "`nearest`" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["seed"] == 3 and summary["datasets"][0]["num_samples"] == 1
    assert (out / "figures" / "points_200" / "nearest.png").is_file()
    assert np.load(out / "masks" / "points_200" / "00000.npy").sum() == 200


def test_eval_cli_config_with_overrides(tmp_path, capsys):
    root = make_nyu_png(tmp_path / "nyu", n=1)
    config = tmp_path / "table.yaml"
    config.write_text(
        f"datasets:\n  - {{name: nyuv2, root: /does/not/exist}}\nprotocols: [ratio:5]\nmethods: [linear]\n"
        f"out: {tmp_path / 'cfg_out'}\nnum_figures: 0\n"
    )
    code = main(
        ["eval", "--config", str(config), "--root", str(root), "--method", "nearest", "--no-progress"]
    )
    assert code == 0
    saved = (tmp_path / "cfg_out" / "config.yaml").read_text()
    assert "nearest" in saved and "linear" not in saved and str(root) in saved


def test_eval_cli_user_errors(tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "--dataset",
                "nyuv2",
                "--root",
                str(tmp_path),
                "--protocol",
                "bogus:1",
                "--method",
                "nearest",
            ]
        )
        == 2
    )
    assert "bogus" in capsys.readouterr().err
    assert (
        main(["eval", "--dataset", "nyuv2", "--root", str(tmp_path / "missing"), "--method", "nearest"]) == 2
    )
    assert main(["eval", "--protocol", "ratio:5"]) == 2
