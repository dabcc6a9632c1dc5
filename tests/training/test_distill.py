"""Latent consistency distillation: one step trains the student, the student round-trips and samples."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, LCMScheduler

from depthlab.pipeline import DepthLabPipeline
from depthlab.training.distill import (
    Distiller,
    DistillSettings,
    consistency_function,
    teacher_ddim_step,
)

from .conftest import TINY_RUN


def distill_config(tmp_path: Path, teacher: Path, name: str, steps: int = 1) -> dict:
    config = copy.deepcopy(TINY_RUN)
    config["run"].update(output_dir=str(tmp_path / name), max_steps=steps, seed=5)
    config["batch"] = {"micro_batch_size": 2}
    config["normalization"] = {"mode": "inference"}
    config["distill"] = {"teacher": str(teacher), "prefill_start": 0.5, "ema_decay": 0.5}
    return config


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("teacher") / "depthlab"
    DepthLabPipeline.build_tiny(seed=1).save_pretrained(folder)
    return folder


def test_consistency_function_boundary_and_ddim_step() -> None:
    scheduler = LCMScheduler(prediction_type="v_prediction")
    sample, v = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    # At t = 0 the consistency function is (nearly) the identity: f(z, 0) = z.
    at_zero = consistency_function(scheduler, v, sample, torch.zeros(2, dtype=torch.long))
    torch.testing.assert_close(at_zero, sample, atol=2e-3, rtol=0)
    # Our per-sample DDIM step is diffusers' DDIM step.
    ddim = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        clip_sample=False,
    )
    ddim.set_timesteps(50)
    t, t_prev = 519, 499
    expected = ddim.step(v, t, sample).prev_sample
    ours = teacher_ddim_step(scheduler, v, sample, torch.full((2,), t), torch.full((2,), t_prev))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, teacher: Path) -> Distiller:
    """One distillation step from the tiny teacher (shared by the tests below)."""
    distiller = Distiller(
        distill_config(tmp_path_factory.mktemp("distill"), teacher, "one"), show_progress=False
    )
    distiller.summary = distiller.train()
    return distiller


@pytest.mark.slow
def test_one_step_changes_the_student_with_a_finite_loss(distilled: Distiller, teacher: Path) -> None:
    loss = distilled.summary["history"][-1]["loss"]
    assert np.isfinite(loss) and loss > 0
    initial = DepthLabPipeline.from_pretrained(teacher).estimation_unet.state_dict()  # the student's start
    after = distilled.models.student.estimation_unet.state_dict()
    changed = [k for k in initial if not torch.equal(initial[k], after[k])]
    assert len(changed) > len(initial) // 2
    # The teacher does not move.
    teacher_now = distilled.models.teacher.estimation_unet.state_dict()
    assert all(torch.equal(initial[k], teacher_now[k]) for k in initial)
    # The target is the EMA of the student (decay 0.5: halfway between the start and the student).
    target = distilled.models.target.estimation_unet.state_dict()
    for key in changed[:5]:
        torch.testing.assert_close(target[key], 0.5 * (initial[key] + after[key]), atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_student_round_trips_and_samples_in_1_2_4_steps(distilled: Distiller) -> None:
    student = DepthLabPipeline.from_pretrained(distilled.summary["export"])
    assert isinstance(student.scheduler, LCMScheduler)
    assert student.scheduler.config.prediction_type == "v_prediction"
    saved = student.estimation_unet.state_dict()
    trained = distilled.models.student.estimation_unet.state_dict()
    assert all(torch.equal(saved[k], trained[k]) for k in trained)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    depth = rng.uniform(1, 4, (40, 48)).astype(np.float32)
    known = rng.random((40, 48)) < 0.3
    options = {"processing_resolution": 0, "fill_mode": "fast", "show_progress_bar": False}
    outputs = {}
    for steps in (1, 2, 4):
        out = student(
            rgb,
            depth,
            known,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(0),
            **options,
        )
        assert out.depth.shape == (40, 48) and np.isfinite(out.depth).all()
        assert len(out.info["timesteps"]) == steps  # every requested step runs at strength 0.8
        assert max(out.info["timesteps"]) == 799
        outputs[steps] = out.depth
    assert not np.array_equal(outputs[1], outputs[2])
    # Same seed, same answer (the re-noising between steps draws from the generator).
    again = student(
        rgb, depth, known, num_inference_steps=2, generator=torch.Generator().manual_seed(0), **options
    )
    np.testing.assert_array_equal(again.depth, outputs[2])
    with pytest.raises(ValueError, match="timestep_spacing"):
        student(rgb, depth, known, num_inference_steps=2, timestep_spacing="trailing", **options)
    with pytest.raises(ValueError, match="num_inference_steps"):
        student(rgb, depth, known, num_inference_steps=41, strength=0.8, **options)


@pytest.mark.slow
def test_distillation_is_deterministic(tmp_path: Path, teacher: Path, distilled: Distiller) -> None:
    rerun = Distiller(distill_config(tmp_path, teacher, "again"), show_progress=False)
    assert rerun.train()["history"][-1]["loss"] == distilled.summary["history"][-1]["loss"]
    a = rerun.models.student.estimation_unet.state_dict()
    b = distilled.models.student.estimation_unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="num_ddim_timesteps"):
        DistillSettings.from_config({"num_ddim_timesteps": 7})
    with pytest.raises(ValueError, match="trainable"):
        DistillSettings.from_config({"trainable": ["vae"]})
    with pytest.raises(ValueError, match="loss"):
        DistillSettings.from_config({"loss": "l1"})
