"""The samplers a DepthLab checkpoint can ask for, and how the pipeline picks its timesteps.

A checkpoint stores its sampler in ``scheduler/scheduler_config.json`` (``_class_name``):

* ``DDIMScheduler`` (the published DepthLab and every model trained with ``depthlab train``):
  ``num_inference_steps`` steps of the full schedule, of which the last ``int(steps * strength)``
  are run (the original release's rule).
* ``LCMScheduler`` (a few-step student from :mod:`depthlab.training.distill`, latent consistency
  distillation, Luo et al. 2023): ``num_inference_steps`` (1-8) consistency steps spread over
  the first ``strength`` of the schedule (``LCMScheduler.set_timesteps(..., strength=...)``), so
  every requested step is run; between steps the prediction is re-noised with fresh noise from the
  pipeline's ``generator``.

``load_scheduler`` reads the class from the config, so ``DepthLabPipeline.from_pretrained`` gives a
student its consistency sampler without any option.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler, LCMScheduler

__all__ = [
    "SCHEDULER_CLASSES",
    "load_scheduler",
    "is_consistency_scheduler",
    "inference_timesteps",
    "lcm_config_from",
    "check_steps",
]

SCHEDULER_CLASSES: dict[str, type] = {"DDIMScheduler": DDIMScheduler, "LCMScheduler": LCMScheduler}


def load_scheduler(folder: str | Path) -> DDIMScheduler | LCMScheduler:
    """The scheduler saved in ``folder`` (``scheduler_config.json``), DDIM or LCM by ``_class_name``.

    Raises:
        ValueError: the config names another class (naming the file and the class).
    """
    folder = Path(folder)
    config_file = folder / "scheduler_config.json"
    name = "DDIMScheduler"
    if config_file.is_file():
        try:
            name = json.loads(config_file.read_text()).get("_class_name") or name
        except json.JSONDecodeError as error:
            raise ValueError(f"{str(config_file)!r} is not valid JSON ({error})") from None
    if name not in SCHEDULER_CLASSES:
        raise ValueError(
            f"{str(config_file)!r} names scheduler {name!r}; DepthLab supports {sorted(SCHEDULER_CLASSES)}"
        )
    return SCHEDULER_CLASSES[name].from_pretrained(folder)


def is_consistency_scheduler(scheduler: Any) -> bool:
    """True for a consistency (few-step student) sampler."""
    return isinstance(scheduler, LCMScheduler)


def lcm_config_from(teacher_config: Mapping[str, Any], original_inference_steps: int = 50) -> dict[str, Any]:
    """``LCMScheduler`` config with the teacher's noise schedule (betas, v-prediction).

    ``original_inference_steps`` is the distillation's solver grid (``N`` in the LCM paper): the
    student is trained at timesteps ``(i + 1) * 1000 / N - 1`` and samples from that grid.
    """
    keys = (
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "trained_betas",
        "prediction_type",
    )
    config = {k: teacher_config[k] for k in keys if k in teacher_config}
    config.update(
        original_inference_steps=int(original_inference_steps),
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_scaling=10.0,
    )
    return config


def inference_timesteps(
    scheduler: DDIMScheduler | LCMScheduler,
    num_inference_steps: int,
    strength: float,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Set ``scheduler``'s timesteps and return those the pipeline runs, ``[K]`` long, high to low.

    DDIM: the last ``int(num_inference_steps * strength)`` of the ``num_inference_steps`` schedule.
    LCM: all ``num_inference_steps``, inside the first ``strength`` of the schedule. Calling it again
    also resets a stateful scheduler's step counter (do so before each chunk of rows).
    """
    if is_consistency_scheduler(scheduler):
        scheduler.set_timesteps(num_inference_steps, device=device, strength=strength)
        return scheduler.timesteps
    scheduler.set_timesteps(num_inference_steps, device=device)
    kept = min(int(num_inference_steps * strength), num_inference_steps)
    return scheduler.timesteps[num_inference_steps - kept :]


def check_steps(scheduler: Any, num_inference_steps: int, strength: float) -> None:
    """Raise ``ValueError`` when ``num_inference_steps`` x ``strength`` leaves no step to run."""
    if is_consistency_scheduler(scheduler):
        grid = int(scheduler.config.original_inference_steps * strength)
        if num_inference_steps > grid:
            raise ValueError(
                f"`num_inference_steps`={num_inference_steps} exceeds the student's "
                f"{grid} grid steps at `strength`={strength} (original_inference_steps "
                f"{scheduler.config.original_inference_steps}); use 1-4 steps"
            )
        return
    if int(num_inference_steps * strength) < 1:
        raise ValueError(
            f"`strength`={strength} with `num_inference_steps`={num_inference_steps} keeps no "
            "denoising step (int(steps * strength) must be >= 1)"
        )
