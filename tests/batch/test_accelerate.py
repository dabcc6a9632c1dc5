"""One node, many processes: ``accelerate launch -m depthlab.batch`` and ``torchrun`` with 2 CPU processes (gloo)."""

import os
import shutil
import signal
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


@pytest.mark.slow
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


@pytest.mark.slow
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


KITTI = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "datasets"
    / "YvanYin__Metric3D"
    / "data"
    / "kitti_demo"
)
PARTS = ".depthlab-results.jsonl.part-*"


def _write_kitti_tiles(folder: Path, tiles: int = 4) -> int:
    """The 3 KITTI frames (uint16 depth / 256 = m, semi-dense) cut into ``tiles`` crops each; returns the count.

    Written to a temporary folder (the data is never copied into the repository); skips without it.
    """
    from PIL import Image

    if not (KITTI / "rgb").is_dir():
        pytest.skip(f"KITTI frames not available at {KITTI}")
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for rgb_path in sorted((KITTI / "rgb").glob("*.png")):
        rgb = Image.open(rgb_path).convert("RGB")
        depth = Image.open(KITTI / "depth" / rgb_path.name)
        width = rgb.width // tiles
        for t in range(tiles):
            box = (t * width, 0, (t + 1) * width, rgb.height)
            rgb.crop(box).save(folder / f"{rgb_path.stem}_{t}_colors.png")
            depth.crop(box).save(folder / f"{rgb_path.stem}_{t}_depth.png")
            count += 1
    return count


def _part_pid(part: Path) -> int:
    """The process id in a part file's name ``.depthlab-results.jsonl.part-<time>-<pid>-r<rank>``."""
    return int(part.name.split("-")[-2])


def _interrupt(out: Path, process: subprocess.Popen, act, timeout: float = 240) -> int:
    """Once a part file this launch created holds a record, call ``act(part)``; returns the exit status.

    The launch is always ended (its process group killed if it outlives ``timeout``).
    """
    import time

    old = set(out.glob(PARTS))
    deadline = time.monotonic() + timeout
    acted = False
    while not acted and process.poll() is None and time.monotonic() < deadline:
        for part in sorted(set(out.glob(PARTS)) - old):
            try:
                if part.read_text().count("\n") >= 1:
                    act(part)
                    acted = True
                    break
            except OSError:
                continue
        time.sleep(0.02)
    try:
        process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert acted, "the launch finished before it could be interrupted"
    return process.returncode


@pytest.mark.slow
def test_accelerate_killed_process_and_ctrl_c_then_rerun_on_kitti(tmp_path, tree, records):
    """accelerate launch, 2 CPU processes, guided on real KITTI crops with a corrupt file in the middle.

    One process is SIGKILLed mid-batch, then a rerun is interrupted with Ctrl-C (SIGINT to the
    launch's process group, as a terminal sends it), then a last rerun: it computes exactly the
    unrecorded items, never recomputes a finished one, and ends with the outputs and manifest of
    the uninterrupted single-process run.
    """
    from depthlab.batch import manifest

    data = tmp_path / "data"
    count = _write_kitti_tiles(data)
    (data / "0000000050_1_colors.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # corrupt, mid-list
    args = [str(data), "--depth-scale", "256", "--method", "guided", "--format", "npy,png16", "--quiet"]
    single = _launch([sys.executable], [*args, "--out", str(tmp_path / "single")], tmp_path)
    assert single.returncode == 1 and "0000000050_1_colors.png" in single.stderr, single.stderr[-3000:]
    reference = records(tmp_path / "single")
    assert len(reference) == count and [r["status"] for r in reference.values()].count("failed") == 1

    import depthlab

    out = tmp_path / "multi"
    src = str(Path(depthlab.__file__).parents[1])
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }

    def start() -> subprocess.Popen:
        return subprocess.Popen(
            [*_accelerate(), "-m", "depthlab.batch", *args, "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
            start_new_session=True,  # its own process group, which Ctrl-C reaches as a whole
        )

    # 1. the second process is killed mid-batch: the launch fails, finished items stay recorded
    def kill_rank_1(part: Path) -> None:
        ranks = sorted(out.glob(PARTS + "-r1"))
        os.kill(_part_pid(ranks[-1] if ranks else part), signal.SIGKILL)

    launch = start()
    assert _interrupt(out, launch, kill_rank_1) != 0
    after_kill = manifest.load(out)
    assert 0 < len(after_kill) < count, f"{len(after_kill)} of {count} recorded: the kill missed the batch"

    # 2. a rerun is interrupted with Ctrl-C once it has finished something
    launch = start()
    assert _interrupt(out, launch, lambda part: os.killpg(launch.pid, signal.SIGINT)) != 0
    after_int = manifest.load(out)
    assert len(after_int) > len(after_kill)
    assert all(after_int[key] == record for key, record in after_kill.items())  # nothing recomputed

    # 3. the last rerun computes exactly the rest: the single-process result, nothing half-written
    final = start()
    stdout, stderr = final.communicate(timeout=240)
    assert final.returncode == 1, stderr[-3000:]  # the corrupt file is retried and fails again
    done = sum(r["status"] == "ok" for r in after_int.values())
    assert f"{count - 1 - done} completed, {done} already done (skipped), 1 failed" in stdout, stdout
    # no traceback from depthlab; the launcher reports the main process's exit status 1 (an item
    # failed) as a ChildFailedError, root cause the main process (it exits after it has reported)
    assert not [
        line for line in stderr.splitlines() if line.strip().startswith("File ") and "depthlab" in line
    ]
    root_cause = stderr.partition("Root Cause")[2]
    assert "exitcode  : 1" in root_cause and "local_rank: 0" in root_cause, stderr
    assert tree(out) == tree(tmp_path / "single") and len(tree(out)) == 2 * (count - 1)
    assert records(out) == reference
    assert not list(out.glob(".*.tmp*")) and not list(out.glob(PARTS))
