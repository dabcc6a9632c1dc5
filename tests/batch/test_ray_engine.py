"""Ray Data engine on a local Ray instance (loopback only, started and stopped here, 2 CPUs, 2 workers)."""

import os
import signal
import threading
import time

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
psutil = pytest.importorskip("psutil")

from depthlab.batch import BatchOptions, RayOptions, WorkListSpec, collect_items, run_batch  # noqa: E402
from depthlab.batch.ray_engine import run_batch_ray  # noqa: E402

pytestmark = pytest.mark.slow  # starts a local Ray instance
TWO_WORKERS = RayOptions(workers=2, cpus_per_worker=0.5)


@pytest.fixture(scope="module")
def local_ray():
    import depthlab

    src = os.path.dirname(os.path.dirname(depthlab.__file__))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": src, "DEPTHLAB_CHECKPOINTS": "/nonexistent"}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()


def _strip(rows):
    return {k: {f: v for f, v in r.items() if f != "seconds"} for k, r in rows.items()}


def test_ray_classical_equals_one_process_corrupt_file_and_rerun(
    local_ray, tmp_path, write_item, write_nyu_frames, tree, records
):
    data = tmp_path / "data"
    write_nyu_frames(data, 4)
    for i in range(2):
        write_item(data, f"s{i}", i)
    (data / "00008_depth.png").write_bytes(b"corrupt")  # one file in the middle of the list
    options = BatchOptions(depth_scale=1000, formats=("npy", "png16"), progress=False)
    single_out, ray_out = tmp_path / "single", tmp_path / "ray"
    items = collect_items(WorkListSpec(images=[str(data)], out=str(single_out)))
    single = run_batch(items, "guided", options, single_out)
    items = collect_items(WorkListSpec(images=[str(data)], out=str(ray_out)))
    report = run_batch_ray(items, "guided", options, ray_out, ray=TWO_WORKERS)
    assert [r["item"] for r in report.failed] == ["00008_colors"] and "00008_depth.png" in report.failed[0][
        "error"
    ]
    assert len(report.completed) == len(single.completed) == 5
    assert tree(single_out) == tree(ray_out) and len(tree(ray_out)) == 10
    assert _strip(records(single_out)) == _strip(records(ray_out))
    # a rerun recomputes nothing (the failed item is retried and fails again)
    again = run_batch_ray(items, "guided", options, ray_out, ray=TWO_WORKERS)
    assert again.completed == [] and again.skipped == {"done": 5} and len(again.failed) == 1


def test_ray_tiny_pipeline_equals_one_process(
    local_ray, tmp_path, tiny_checkpoint, monkeypatch, write_item, write_nyu_frames, tree, records
):
    import torch

    monkeypatch.undo()
    data = tmp_path / "data"
    write_nyu_frames(data, 3)
    write_item(data, "s0", 0)
    options = BatchOptions(
        depth_scale=1000,
        formats=("npy",),
        progress=False,
        checkpoints=str(tiny_checkpoint),
        device="cpu",
        method_options={"num_inference_steps": 2, "processing_resolution": 32, "strength": 1.0},
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers (Ray gives each a single thread here)
    try:
        items = collect_items(WorkListSpec(images=[str(data)], out=str(tmp_path / "single")))
        run_batch(items, "depthlab", options, tmp_path / "single")
    finally:
        torch.set_num_threads(threads)
    items = collect_items(WorkListSpec(images=[str(data)], out=str(tmp_path / "ray")))
    report = run_batch_ray(items, "depthlab", options, tmp_path / "ray", ray=TWO_WORKERS)
    assert len(report.completed) == 4 and not report.failed
    assert tree(tmp_path / "single") == tree(tmp_path / "ray")
    assert _strip(records(tmp_path / "single")) == _strip(records(tmp_path / "ray"))


def _kill_one_worker(out, stop: threading.Event, killed: list) -> None:
    """Once a first item is recorded, SIGKILL one completion actor's process (mid-batch)."""
    deadline = time.time() + 60
    while not stop.is_set() and time.time() < deadline:
        parts = list(out.glob(".depthlab-results.jsonl.part-*"))
        if any(p.stat().st_size > 0 for p in parts):
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if "CompletionWorker" in " ".join(proc.info["cmdline"] or []):
                    os.kill(proc.info["pid"], signal.SIGKILL)
                    killed.append(proc.info["pid"])
                    return
        time.sleep(0.05)


def test_ray_killed_worker_loses_only_in_flight_items(local_ray, tmp_path, write_nyu_frames, tree, records):
    data = tmp_path / "data"
    write_nyu_frames(data, 8, size=(120, 160))
    options = BatchOptions(depth_scale=1000, formats=("npy",), progress=False)
    reference = tmp_path / "reference"
    run_batch(
        collect_items(WorkListSpec(images=[str(data)], out=str(reference))), "guided", options, reference
    )
    out = tmp_path / "ray"
    items = collect_items(WorkListSpec(images=[str(data)], out=str(out)))
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_worker, args=(out, stop, killed), daemon=True)
    killer.start()
    try:
        first = run_batch_ray(items, "guided", options, out, ray=TWO_WORKERS)
        finished_first = len(first.completed)
    except Exception:  # Ray gave up on the lost actor: the finished items are recorded all the same
        finished_first = None
    finally:
        stop.set()
        killer.join()
    assert killed, "no completion worker was found to kill"
    # whatever Ray did with the in-flight items, the rerun completes exactly the rest
    rerun = run_batch_ray(items, "guided", options, out, ray=TWO_WORKERS)
    assert not rerun.failed
    if finished_first is not None:
        assert len(rerun.completed) == 8 - finished_first
    assert tree(out) == tree(reference) and len(tree(out)) == 8
    assert all(r["status"] == "ok" for r in records(out).values())
    assert run_batch_ray(items, "guided", options, out, ray=TWO_WORKERS).completed == []


def test_cli_engine_ray(local_ray, tmp_path, write_item, capsys):
    from depthlab.cli import main

    for i in range(3):
        write_item(tmp_path / "in", f"s{i}", i)
    args = ["complete", str(tmp_path / "in"), "--depth-scale", "1000", "--method", "linear", "--quiet",
            "--format", "npy,color", "--engine", "ray", "--workers", "2", "--cpus-per-worker", "0.5"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "ray")]) == 0
    assert "3 completed, 0 already done (skipped), 0 failed" in capsys.readouterr().out
    assert main([*args, "--workers", "4", "--out", str(tmp_path / "too_many")]) == 2
    err = capsys.readouterr().err
    assert "leaves no CPU for decoding" in err and len(err.strip().splitlines()) == 1
    assert main([*args[:-6], "--out", str(tmp_path / "local")]) == 0
    assert [p.read_bytes() for p in sorted((tmp_path / "ray").glob("*.npy"))] == [
        p.read_bytes() for p in sorted((tmp_path / "local").glob("*.npy"))
    ]
