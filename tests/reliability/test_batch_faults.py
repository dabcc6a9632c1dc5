"""Batch faults through the CLI (subprocess): Ctrl-C mid-batch then resume, a process killed
mid-item then resume, a corrupt file in the middle. Each asserts the exit status, one-line
messages without a traceback, that no input file changed and that the resumed outputs equal an
uninterrupted run bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import depthlab

SRC = str(Path(depthlab.__file__).parents[1])
N_ITEMS = 6


def _write_inputs(folder: Path, count: int = N_ITEMS, size: tuple[int, int] = (120, 160)) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"f{i}_colors.png")
        depth = rng.integers(1000, 4000, size).astype(np.uint16)
        depth[rng.random(size) < 0.95] = 0
        Image.fromarray(depth).save(folder / f"f{i}_depth.png")


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.npy"))}


def _command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "depthlab.cli", "complete", str(data), "--depth-scale", "1000",
            "--method", "guided", "--format", "npy", "--out", str(out), "--quiet"]  # fmt: skip


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
    }


def _recorded(out: Path) -> int:
    """Records on disk so far (manifest and unmerged parts)."""
    count = 0
    for path in [out / "depthlab-results.jsonl", *out.glob(".depthlab-results.jsonl.part-*")]:
        if path.is_file():
            count += sum(1 for line in path.read_text().splitlines() if line.endswith("}"))
    return count


def _start_and_stop(data: Path, out: Path, sig: int, after: int) -> subprocess.CompletedProcess:
    """Run the CLI, send ``sig`` once ``after`` items are recorded; return the finished process."""
    proc = subprocess.Popen(_command(data, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())  # fmt: skip
    deadline = time.time() + 120
    while _recorded(out) < after and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail(f"the batch ended before it could be interrupted: {proc.communicate()}")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Inputs and the outputs of one uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    _write_inputs(root / "data")
    result = subprocess.run(_command(root / "data", root / "out"), capture_output=True, text=True, env=_env(),
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root / "data", _outputs(root / "out")


def test_ctrl_c_mid_batch_then_resume(reference, tmp_path):
    data, expected = reference
    inputs = _hashes(data)
    out = tmp_path / "out"
    stopped = _start_and_stop(data, out, signal.SIGINT, after=2)
    assert stopped.returncode == 130
    lines = stopped.stderr.strip().splitlines()
    assert "Traceback" not in stopped.stderr and len(lines) == 1
    assert "interrupted" in lines[0] and "run the same command again to resume" in lines[0]
    records = [json.loads(x) for x in (out / "depthlab-results.jsonl").read_text().splitlines()]
    finished = {r["item"] for r in records if r["status"] == "ok"}
    assert len(finished) >= 2 and not list(out.glob(".*part-*"))  # merged on the way out
    assert not [p for p in out.iterdir() if ".tmp" in p.name]  # no half-written file left
    for name, content in _outputs(out).items():  # what was written is complete and right
        assert content == expected[name]
    resumed = subprocess.run(_command(data, out), capture_output=True, text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (
        f"{N_ITEMS - len(finished)} completed, {len(finished)} already done (skipped), 0 failed"
        in resumed.stdout
    )
    assert _outputs(out) == expected
    assert _hashes(data) == inputs


def test_killed_mid_item_then_resume(reference, tmp_path):
    data, expected = reference
    inputs = _hashes(data)
    out = tmp_path / "out"
    killed = _start_and_stop(data, out, signal.SIGKILL, after=2)
    assert killed.returncode == -signal.SIGKILL
    finished = _recorded(out)
    assert finished >= 2
    for name, content in _outputs(out).items():  # an item in flight leaves no output, only hidden temporaries
        assert content == expected[name]
    resumed = subprocess.run(_command(data, out), capture_output=True, text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    done = int(resumed.stdout.split(" already done")[0].rsplit(" ", 1)[1])
    assert done >= finished - 1  # the item killed after its record is done too; nothing is lost
    assert _outputs(out) == expected
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    assert _hashes(data) == inputs


def test_corrupt_file_in_the_middle(reference, tmp_path):
    source, expected = reference
    data = tmp_path / "data"
    data.mkdir()
    for path in source.iterdir():
        (data / path.name).write_bytes(path.read_bytes())
    (data / "f2_depth.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    inputs = _hashes(data)
    out = tmp_path / "out"
    result = subprocess.run(_command(data, out), capture_output=True, text=True, env=_env(), timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{N_ITEMS - 1} completed, 0 already done (skipped), 1 failed" in result.stdout
    failure_lines = [line for line in result.stderr.splitlines() if "f2_depth.png" in line]
    assert failure_lines and all("f2_colors" in x or "f2_depth.png" in x for x in failure_lines)
    produced = _outputs(out)
    assert set(produced) == set(expected) - {"f2_colors_depth.npy"}
    assert all(produced[name] == expected[name] for name in produced)
    assert _hashes(data) == inputs
    records = {
        json.loads(x)["item"]: json.loads(x)
        for x in (out / "depthlab-results.jsonl").read_text().splitlines()
    }
    assert records["f2_colors"]["status"] == "failed" and "f2_depth.png" in records["f2_colors"]["error"]
