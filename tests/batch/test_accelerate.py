"""One node, many processes: ``accelerate launch -m depthlab.batch`` and ``torchrun`` with 2 CPU processes (gloo)."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from depthlab.cli import main

pytest.importorskip("torch")
pytest.importorskip("accelerate")


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def _launch(launcher: list[str], args: list[str], cwd) -> subprocess.CompletedProcess:
    import depthlab

    src = str(Path(depthlab.__file__).parents[1])  # the depthlab under test, whatever the cwd
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [*launcher, "-m", "depthlab.batch", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=cwd,
    )
    if result.returncode != 0 and "Address already in use" in result.stderr:
        pytest.skip("rendezvous port taken")
    return result


def _accelerate() -> list[str]:
    if shutil.which("accelerate") is None:
        pytest.skip("the `accelerate` launcher is not on PATH")
    return [
        "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        _free_port(),
    ]


def test_accelerate_two_processes_equal_one_bit_for_bit(
    tmp_path, monkeypatch, tiny_checkpoint, write_item, write_nyu_frames, tree, records, capsys
):
    monkeypatch.undo()  # the real weight search: --checkpoints names the tiny pipeline
    monkeypatch.setenv("DEPTHLAB_CHECKPOINTS", str(tmp_path / "none"))
    data = tmp_path / "data"
    write_nyu_frames(data / "nyu", 4)
    for i in range(3):
        write_item(data / "synthetic", f"s{i}", i)
    args = [
        str(data),
        "--depth-scale",
        "1000",
        "--method",
        "depthlab",
        "--checkpoints",
        str(tiny_checkpoint),
        "--steps",
        "2",
        "--processing-resolution",
        "32",
        "--strength",
        "1.0",
        "--device",
        "cpu",
        "--format",
        "npy,png16",
        "--quiet",
    ]
    # the same thread count as the launched processes: float reductions then add up in the same order
    single = _launch([sys.executable], [*args, "--out", str(tmp_path / "single")], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    result = _launch(_accelerate(), [*args, "--out", str(tmp_path / "multi")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("7 completed, 0 already done (skipped), 0 failed") == 1  # main process reports
    single, multi = tree(tmp_path / "single"), tree(tmp_path / "multi")
    assert len(single) == 14 and single == multi
    assert records(tmp_path / "single") == records(tmp_path / "multi")
    assert not list((tmp_path / "multi").glob(".depthlab-results.jsonl.part-*"))  # parts merged
    # a rerun (one process) recomputes nothing
    assert main(["complete", *args, "--out", str(tmp_path / "multi")]) == 0
    assert "0 completed, 7 already done" in capsys.readouterr().out


def test_torchrun_two_processes_classical_with_a_corrupt_file(
    tmp_path, write_item, write_nyu_frames, tree, records
):
    data = tmp_path / "data"
    write_nyu_frames(data, 3)
    for i in range(3):
        write_item(data, f"s{i}", i)
    (data / "s1_colors.png").write_bytes(b"not an image")
    args = [str(data), "--depth-scale", "1000", "--method", "guided", "--format", "npy,color", "--quiet"]
    assert _launch([sys.executable], [*args, "--out", str(tmp_path / "single")], tmp_path).returncode == 1
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        _free_port(),
    ]
    result = _launch(launcher, [*args, "--out", str(tmp_path / "multi")], tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "5 completed, 0 already done (skipped), 1 failed" in result.stdout
    assert "s1_colors.png" in result.stderr
    assert tree(tmp_path / "single") == tree(tmp_path / "multi")
    failed = {k: r for k, r in records(tmp_path / "multi").items() if r["status"] == "failed"}
    assert list(failed) == ["s1_colors"]
    assert records(tmp_path / "single") == records(tmp_path / "multi")
