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


def checkpoint_weights(output_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / "checkpoints" / f"step_{step:07d}" / "model.safetensors"))


def test_resume_reproduces_the_uninterrupted_run(tiny_config):
    common = {
        "run": {"max_steps": 4, "checkpoint_every": 2},
        "model": {"vae_warmup": {"steps": 2, "batch_size": 2, "pool_size": 4, "lr": 1e-3}},
    }
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
    vae_a = load_file(str(Path(straight["run"]["output_dir"]) / "checkpoints/step_0000004/vae.safetensors"))
    vae_b = load_file(str(out / "checkpoints/step_0000004/vae.safetensors"))
    assert all(torch.equal(vae_a[k], vae_b[k]) for k in vae_a)
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

    assert main(["train", "--config", "smoke_tiny", "--dry-run", "optim.lr=0.5"]) == 0
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2


def _launcher_missing() -> str | None:
    if shutil.which("accelerate") is None:
        return "the `accelerate` launcher is not on PATH"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_launcher_missing() is not None, reason=str(_launcher_missing()))
def test_accelerate_launch_two_cpu_processes_matches_accumulation(tiny_config, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` with run.cpu=true: 2 CPU processes (gloo).

    2 processes x 1 micro-batch reach the weights of 1 process x 2 accumulated micro-batches: same
    samples, same noise, gradients averaged across processes.
    """
    overrides = {"run": {"max_steps": 2, "checkpoint_every": 2}, "ema": {"enabled": False}}
    config = tiny_config("ddp", overrides)
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # mask mixture order matters
    port = str(29500 + os.getpid() % 1000)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        "accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port,
        "-m", "depthlab.training", "--config", str(path), "--no-progress",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    if result.returncode != 0 and "Address already in use" in result.stderr:
        pytest.skip(f"port {port} is taken: no gloo rendezvous possible")
    assert result.returncode == 0, result.stderr[-3000:]
    out = Path(config["run"]["output_dir"])
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["_runtime"]["num_processes"] == 2
    assert saved["_runtime"]["accumulation_steps"] == 1  # 4 = 2 per process x 2 processes
    assert (out / "checkpoints" / "step_0000002" / "random_states_1.pkl").is_file()

    single = tiny_config("single", overrides)
    Trainer(single, show_progress=False).train()
    a = checkpoint_weights(out, 2)
    b = checkpoint_weights(Path(single["run"]["output_dir"]), 2)
    initial = Trainer(tiny_config("init"), show_progress=False).unwrapped.state_dict()
    assert any(not torch.equal(a[k], initial[k]) for k in a)
    # Same losses and gradient norms at every step (float reduction order aside) ...
    ddp_rows = np.genfromtxt(out / "metrics.csv", delimiter=",", names=True)
    single_rows = np.genfromtxt(Path(single["run"]["output_dir"]) / "metrics.csv", delimiter=",", names=True)
    np.testing.assert_allclose(ddp_rows["loss"], single_rows["loss"], rtol=1e-5)
    np.testing.assert_allclose(ddp_rows["grad_norm"], single_rows["grad_norm"], rtol=1e-5)
    # ... and the same weights up to Adam's amplification of rounding in near-zero gradients
    # (first steps move each weight by about lr = 1e-3 whatever the gradient's size).
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=5e-4, msg=key)


def test_misspelt_export_dtype_fails_before_training(tiny_config):
    """A misspelt `export.dtype` used to export float32 silently after the whole run."""
    config = tiny_config("bad_dtype", {"export": {"dtype": "fp61"}})
    with pytest.raises(ValueError, match="`export.dtype`='fp61'"):
        Trainer(config, show_progress=False)
    assert not (Path(config["run"]["output_dir"]) / "checkpoints").exists()
