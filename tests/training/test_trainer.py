import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from depthlab.training.trainer import Trainer, ValidationSettings, find_checkpoint, run_validation

REPO = Path(__file__).resolve().parents[2]


def checkpoint_weights(output_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))


def test_resume_reproduces_the_uninterrupted_run(tiny_config):
    common = {"run": {"max_steps": 4, "checkpoint_every": 2}}
    straight = tiny_config("straight", common)
    Trainer(straight, show_progress=False).train()

    interrupted = tiny_config("interrupted", {**common, "run": {**common["run"], "stop_at_step": 2}})
    Trainer(interrupted, show_progress=False).train()
    out = Path(interrupted["run"]["output_dir"])
    assert find_checkpoint(out, "latest").name == "step_0000002"
    assert not (out / "checkpoints" / "step_0000004").exists()
    resumed = tiny_config("interrupted", {**common, "run": {**common["run"], "resume": "latest"}})
    summary = Trainer(resumed, show_progress=False).train()
    assert summary["start_step"] == 2 and summary["end_step"] == 4

    a = checkpoint_weights(Path(straight["run"]["output_dir"]), 4)
    b = checkpoint_weights(out, 4)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    # The weights did move away from the initial ones, and the EMA state was resumed too.
    first = checkpoint_weights(out, 2)
    assert any(not torch.equal(first[k], b[k]) for k in b)
    ema_a = torch.load(
        Path(straight["run"]["output_dir"]) / "checkpoints/step_0000004/custom_checkpoint_1.pkl"
    )
    ema_b = torch.load(out / "checkpoints/step_0000004/custom_checkpoint_1.pkl")
    assert ema_a["num_updates"] == ema_b["num_updates"] == 4
    for x, y in zip(ema_a["shadow"], ema_b["shadow"], strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)
    # Logs: config saved with the run, metrics for every step.
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["run"]["resume"] == "latest" and saved["_runtime"]["accumulation_steps"] == 2
    lines = (out / "metrics.csv").read_text().strip().splitlines()
    assert [int(line.split(",")[0]) for line in lines[1:]] == [1, 2, 3, 4]


def test_export_loads_in_the_pipeline_and_reproduces_validation(tiny_config):
    from depthlab.pipeline import DepthLabPipeline

    config = tiny_config(
        "export",
        {
            "run": {"max_steps": 2},
            "model": {"vae_warmup": {"steps": 2, "batch_size": 2, "pool_size": 4, "lr": 1e-3}},
            "validation": {
                "at_end": True,
                "dataset": {"name": "synthetic", "length": 2, "height": 32, "width": 32, "seed": 99},
                "masks": ["holes:0.4", "ratio:10"],
                "num_inference_steps": 3,
                "strength": 0.8,
            },
            "export": {"save_pretrained": True, "original_layout": True},
        },
    )
    trainer = Trainer(config, show_progress=False)
    summary = trainer.train()
    out = Path(config["run"]["output_dir"])
    assert np.isfinite(summary["validation_after"]["abs_rel"])
    saved = np.load(out / "validation" / "step_0000002.npz")
    items = trainer._validation_items()
    settings = ValidationSettings.from_config(config["validation"])
    for folder in ("final/depthlab", "final/original"):
        pipe = DepthLabPipeline.from_pretrained(out / folder, reference_fp16_rounding=False)
        assert pipe.vae.config.scaling_factor == pytest.approx(trainer.models.vae.config.scaling_factor)
        metrics, predictions = run_validation(pipe, items, settings)
        for item, prediction in zip(items, predictions, strict=True):
            np.testing.assert_allclose(prediction, saved[item.sample_id], rtol=1e-5, atol=1e-5)
        assert metrics["abs_rel"] == pytest.approx(summary["validation_after"]["abs_rel"], rel=1e-5)
    assert (out / "final/original/DepthLab/denoising_unet.pth").is_file()
    assert json.loads((out / "summary.json").read_text())["end_step"] == 2


def test_batch_size_must_divide(tiny_config):
    config = tiny_config("bad", {"batch": {"effective_batch_size": 3, "micro_batch_size": 2}})
    with pytest.raises(ValueError, match="effective_batch_size"):
        Trainer(config, show_progress=False)


def test_cli_dry_run_and_errors(tmp_path):
    from depthlab.cli import main

    assert (
        main(["train", "--config", str(REPO / "configs/train/smoke_tiny.yaml"), "--dry-run", "optim.lr=0.5"])
        == 0
    )
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2


def _accelerate_available() -> str | None:
    if shutil.which("accelerate") is None:
        return "the `accelerate` launcher is not on PATH"
    return None


@pytest.mark.skipif(_accelerate_available() is not None, reason=str(_accelerate_available()))
def test_accelerate_launch_two_cpu_processes(tiny_config, tmp_path):
    """2 processes on CPU (gloo): the same script, gradients synchronised, identical weights."""
    config = tiny_config("ddp", {"run": {"max_steps": 2, "checkpoint_every": 2}, "ema": {"enabled": False}})
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": str(29500 + os.getpid() % 1000)}
    command = [
        "accelerate", "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", env["MASTER_PORT"],
        "-m", "depthlab.training", "--config", str(path), "--no-progress",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    if result.returncode != 0 and "Address already in use" in result.stderr:
        pytest.skip("no free port for the gloo rendezvous")
    assert result.returncode == 0, result.stderr[-3000:]
    out = Path(config["run"]["output_dir"])
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["_runtime"]["num_processes"] == 2
    assert saved["_runtime"]["accumulation_steps"] == 1  # 4 = 2 per process x 2 processes
    weights = checkpoint_weights(out, 2)
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert (out / "checkpoints" / "step_0000002" / "random_states_1.pkl").is_file()
