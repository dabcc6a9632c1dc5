"""Few-step DepthLab: latent consistency distillation (LCD) of a trained teacher.

Recipe: Luo, Tan, Huang, Li, Zhao, "Latent Consistency Models: Synthesizing High-Resolution Images
with Few-Step Inference", arXiv:2310.04378 (2023), Algorithm 1 (latent consistency distillation),
applied to DepthLab's conditional depth latent. The student has the teacher's architecture, inputs
and outputs (reference U-Net on the RGB latent, 12-channel estimation U-Net, CLIP context) and is
saved with ``DepthLabPipeline.save_pretrained`` together with an ``LCMScheduler`` config, so
``DepthLabPipeline.from_pretrained(student)`` samples it in ``num_inference_steps`` = 1-4 steps.

One distillation step (shapes for ``B`` samples, latents ``[B, 4, h, w]``):

1. Frozen encoders as in training (:func:`~depthlab.training.objective.encode_batch`): RGB, GT
   depth, mask and masked-depth latents, CLIP ``image_embeds``.
2. Start latent per sample: the GT depth latent, or (probability ``prefill_start``) the latent of
   the nearest-filled known depth, which is what the pipeline noises at ``strength < 1``.
3. Solver grid ``t_i = (i + 1) k - 1``, ``k = T / N`` (``N = num_ddim_timesteps``, 50 as in LCM);
   draw ``i``, ``t = t_i``, ``t' = max(t - k, 0)``; ``z_t = add_noise(start, eps, t)``.
4. Student consistency function ``f(z_t, t) = c_skip(t) z_t + c_out(t) x0(v_student)``
   (``LCMScheduler`` boundary scalings, ``x0 = sqrt(a_t) z_t - sqrt(1 - a_t) v``).
5. Teacher DDIM step (no grad) ``z_t -> z_t'`` from its v-prediction; with ``blend`` the known
   cells are replaced by ``add_noise(start, eps, t')`` exactly as the pipeline blends.
6. Target ``f_ema(z_t', t')`` from the EMA copy of the student (decay ``ema_decay``, 0.95 in LCM).
7. Loss: pseudo-Huber (``sqrt(d^2 + c^2) - c``, LCM's choice) or L2 between 4 and 6, per latent
   cell, with the training objective's cell weights (invalid GT cells 0).

Classifier-free guidance is not distilled (DepthLab runs at guidance scale 1). The VAE, the CLIP
encoder and, by default, the reference U-Net and projection are the teacher's (frozen).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import LCMScheduler

from depthlab import preprocessing
from depthlab.config import save_config
from depthlab.masks import MaskMixture
from depthlab.models import conditioning
from depthlab.models.schedulers import lcm_config_from
from depthlab.training.data import PositionBatchSampler, TrainingDataset, build_dataset
from depthlab.training.model_setup import TrainingModels, models_from_depthlab
from depthlab.training.objective import DepthLabTrainModule, encode_batch, latent_loss_weights
from depthlab.training.optim import build_lr_schedule, build_optimizer
from depthlab.training.sample import FILL_MODES, AugmentationConfig, NormalizationConfig

logger = logging.getLogger(__name__)

__all__ = [
    "DistillSettings",
    "ConsistencyModels",
    "consistency_function",
    "teacher_ddim_step",
    "distillation_loss",
    "update_target",
    "build_student_pipeline",
    "Distiller",
]

_STUDENT_CHOICES = ("reference_unet", "estimation_unet", "image_projection")


@dataclass(frozen=True)
class DistillSettings:
    """``distill:`` section of a config (see the packaged config ``distill_tiny``)."""

    teacher: str | None = None
    num_ddim_timesteps: int = 50
    ema_decay: float = 0.95
    loss: str = "huber"
    huber_c: float = 0.001
    prefill_start: float = 0.5
    blend: bool = True
    trainable: tuple[str, ...] = ("estimation_unet",)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> DistillSettings:
        config = dict(config or {})
        settings = cls(
            teacher=config.get("teacher"),
            num_ddim_timesteps=int(config.get("num_ddim_timesteps", 50)),
            ema_decay=float(config.get("ema_decay", 0.95)),
            loss=str(config.get("loss", "huber")),
            huber_c=float(config.get("huber_c", 0.001)),
            prefill_start=float(config.get("prefill_start", 0.5)),
            blend=bool(config.get("blend", True)),
            trainable=tuple(config.get("trainable", ("estimation_unet",))),
        )
        if settings.num_ddim_timesteps < 2 or 1000 % settings.num_ddim_timesteps:
            raise ValueError(
                f"`distill.num_ddim_timesteps` must divide 1000 and be >= 2; got {settings.num_ddim_timesteps}"
            )
        if not 0.0 <= settings.ema_decay < 1.0:
            raise ValueError(f"`distill.ema_decay` must be in [0, 1); got {settings.ema_decay}")
        if settings.loss not in ("huber", "l2"):
            raise ValueError(f"`distill.loss` must be 'huber' or 'l2'; got {settings.loss!r}")
        if not 0.0 <= settings.prefill_start <= 1.0:
            raise ValueError(f"`distill.prefill_start` must be in [0, 1]; got {settings.prefill_start}")
        bad = [name for name in settings.trainable if name not in _STUDENT_CHOICES]
        if bad or not settings.trainable:
            raise ValueError(
                f"`distill.trainable` must be a non-empty subset of {_STUDENT_CHOICES}; got {bad}"
            )
        return settings


class ConsistencyModels:
    """Teacher (frozen), student (trained) and target (EMA of the student), each a fused module.

    The student starts as a copy of the teacher; the target as a copy of the student.
    """

    def __init__(self, models: TrainingModels, settings: DistillSettings) -> None:
        self.models = models
        self.settings = settings
        for module in models.modules().values():
            module.requires_grad_(False)
        self.teacher = DepthLabTrainModule(
            models.reference_unet, models.estimation_unet, models.image_projection
        ).eval()
        # Trained parts are copies; frozen ones are shared, except the reference U-Net: each fusion
        # installs its own attention processors on it, so the student always gets its own copy.
        parts = {
            name: copy.deepcopy(getattr(models, name))
            if name in settings.trainable or name == "reference_unet"
            else getattr(models, name)
            for name in _STUDENT_CHOICES
        }
        self.student = DepthLabTrainModule(
            parts["reference_unet"], parts["estimation_unet"], parts["image_projection"]
        )
        for name in settings.trainable:
            getattr(self.student, name).requires_grad_(True)
        self.target = DepthLabTrainModule(
            copy.deepcopy(self.student.reference_unet),
            copy.deepcopy(self.student.estimation_unet),
            copy.deepcopy(self.student.image_projection),
        ).eval()
        self.target.requires_grad_(False)
        self.student.train()

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.student.parameters() if p.requires_grad]

    def to(self, device: torch.device) -> ConsistencyModels:
        for module in (self.teacher, self.student, self.target, self.models.vae, self.models.image_encoder):
            module.to(device)
        return self


def _per_sample(values: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """``values[timesteps]`` shaped ``[B, 1, 1, 1]`` for broadcasting against latents."""
    return values.to(timesteps.device)[timesteps].float().reshape(-1, 1, 1, 1)


def consistency_function(
    scheduler: LCMScheduler, v_prediction: torch.Tensor, sample: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """``f(z_t, t) = c_skip(t) z_t + c_out(t) x0`` for a v-prediction ``[B, 4, h, w]``, ``timesteps [B]``."""
    alphas = scheduler.alphas_cumprod
    alpha = _per_sample(alphas, timesteps).sqrt()
    sigma = (1.0 - _per_sample(alphas, timesteps)).sqrt()
    x0 = alpha * sample - sigma * v_prediction
    c_skip, c_out = scheduler.get_scalings_for_boundary_condition_discrete(
        timesteps.float().reshape(-1, 1, 1, 1)
    )
    return c_skip * sample + c_out * x0


def teacher_ddim_step(
    scheduler: LCMScheduler,
    v_prediction: torch.Tensor,
    sample: torch.Tensor,
    timesteps: torch.Tensor,
    prev_timesteps: torch.Tensor,
) -> torch.Tensor:
    """Deterministic DDIM step ``z_t -> z_t'`` from the teacher's v-prediction (per-sample ``t``, ``t'``)."""
    alphas = scheduler.alphas_cumprod
    alpha, sigma = _per_sample(alphas, timesteps).sqrt(), (1.0 - _per_sample(alphas, timesteps)).sqrt()
    x0 = alpha * sample - sigma * v_prediction
    eps = sigma * sample + alpha * v_prediction
    alpha_prev = _per_sample(alphas, prev_timesteps).sqrt()
    sigma_prev = (1.0 - _per_sample(alphas, prev_timesteps)).sqrt()
    return alpha_prev * x0 + sigma_prev * eps


def _add_noise(
    scheduler: LCMScheduler, start: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    alphas = scheduler.alphas_cumprod
    return _per_sample(alphas, t).sqrt() * start + (1.0 - _per_sample(alphas, t)).sqrt() * noise


@torch.no_grad()
def _prefill_latents(vae: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Latent of the nearest-filled known depth (the pipeline's strength < 1 start) ``[B, 4, h, w]``."""
    depth = batch["depth_norm"][:, 0].numpy()  # [B, H, W]
    known = batch["unknown"][:, 0].numpy() < 0.5
    filled = np.stack(
        [
            preprocessing.nearest_fill(np.where(k, d, 0).astype(np.float32), k, exact=False)
            for d, k in zip(depth, known, strict=True)
        ]
    )
    x = conditioning.to_vae_input(filled).to(vae.device)  # [B, 3, H, W]
    return conditioning.encode_latent(vae, x).float()


def distillation_loss(
    models: ConsistencyModels,
    scheduler: LCMScheduler,
    batch: Mapping[str, torch.Tensor],
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """LCD loss of one micro-batch (module docstring, steps 1-7); returns ``(loss, stats)``."""
    settings = models.settings
    encoded = encode_batch(models.models.vae, models.models.image_encoder, batch)
    depth_latent = encoded["depth"]  # [B, 4, h, w]
    size, device = depth_latent.shape[0], depth_latent.device
    # 2. Start latents.
    start = depth_latent
    if settings.prefill_start > 0:
        use_prefill = torch.rand(size, generator=generator) < settings.prefill_start  # [B]
        if bool(use_prefill.any()):
            prefill = _prefill_latents(models.models.vae, batch)
            start = torch.where(use_prefill.to(device).reshape(-1, 1, 1, 1), prefill, depth_latent)
    # 3. Timesteps on the solver grid and noise.
    num_train = int(scheduler.config.num_train_timesteps)
    skip = num_train // settings.num_ddim_timesteps
    index = torch.randint(0, settings.num_ddim_timesteps, (size,), generator=generator)
    timesteps = ((index + 1) * skip - 1).to(device)  # [B]
    prev_timesteps = (timesteps - skip).clamp_min(0)
    noise = torch.randn(tuple(depth_latent.shape), generator=generator).to(device)
    noisy = _add_noise(scheduler, start, noise, timesteps)
    condition = torch.cat([encoded["mask"], encoded["masked_depth"]], dim=1)  # [B, 8, h, w]
    embeds = encoded["image_embeds"]
    # 4. Student.
    v_student = models.student(
        encoded["rgb"], torch.cat([noisy, condition], dim=1), timesteps, embeds
    ).float()
    prediction = consistency_function(scheduler, v_student, noisy, timesteps)
    models.student.fusion.clear()
    with torch.no_grad():
        # 5. Teacher DDIM step t -> t' (+ blend of the known cells, as the pipeline does).
        v_teacher = models.teacher(
            encoded["rgb"], torch.cat([noisy, condition], dim=1), timesteps, embeds
        ).float()
        models.teacher.fusion.clear()
        previous = teacher_ddim_step(scheduler, v_teacher, noisy, timesteps, prev_timesteps)
        unknown = batch["unknown"].to(device)  # [B, 1, H, W], 1 = unknown
        if settings.blend:
            unknown_down = F.interpolate(unknown, size=previous.shape[-2:], mode="nearest")
            known_latent = _add_noise(scheduler, start, noise, prev_timesteps)
            previous = (1 - unknown_down) * known_latent + unknown_down * previous
        # 6. Target from the EMA student.
        v_target = models.target(
            encoded["rgb"], torch.cat([previous, condition], dim=1), prev_timesteps, embeds
        )
        models.target.fusion.clear()
        target = consistency_function(scheduler, v_target.float(), previous, prev_timesteps)
    # 7. Per-cell distance with the training objective's weights.
    squared = ((prediction - target) ** 2).mean(dim=1, keepdim=True)  # [B, 1, h, w]
    if settings.loss == "huber":
        distance = torch.sqrt(squared + settings.huber_c**2) - settings.huber_c
    else:
        distance = squared
    weight = latent_loss_weights(batch["valid"].to(device), unknown)
    loss = (distance * weight).sum() / weight.sum().clamp_min(1e-8)
    return loss, {"loss": float(loss.detach()), "timestep_mean": float(timesteps.float().mean())}


@torch.no_grad()
def update_target(models: ConsistencyModels, decay: float) -> None:
    """``target <- decay * target + (1 - decay) * student`` over the trained modules."""
    for name in models.settings.trainable:
        student = list(getattr(models.student, name).parameters())
        target = list(getattr(models.target, name).parameters())
        torch._foreach_lerp_([t.data for t in target], [s.detach() for s in student], 1.0 - decay)


def build_student_pipeline(
    models: ConsistencyModels, which: str = "student", reference_fp16_rounding: bool = True
) -> Any:
    """A ``DepthLabPipeline`` around the student (or ``"target"``) modules with the LCM scheduler."""
    from depthlab.pipeline import DepthLabPipeline

    module = getattr(models, which)
    scheduler = LCMScheduler(
        **lcm_config_from(models.models.scheduler_config, models.settings.num_ddim_timesteps)
    )
    return DepthLabPipeline(
        models.models.vae,
        module.reference_unet,
        module.estimation_unet,
        models.models.image_encoder,
        module.image_projection,
        scheduler,
        image_processor=models.models.image_processor,
        reference_fp16_rounding=reference_fp16_rounding,
    )


class Distiller:
    """Run latent consistency distillation from a merged config (``distill:`` section present).

    Config sections: ``distill`` (:class:`DistillSettings`; ``teacher`` = anything
    ``DepthLabPipeline.from_pretrained`` loads), ``run`` (``output_dir``, ``seed``, ``max_steps``,
    ``cpu``), ``data``/``masks``/``normalization`` (the training sample stream), ``batch.micro_batch_size``,
    ``optim``, ``logging.every``. The student is exported to ``<output_dir>/final/depthlab``.
    """

    def __init__(self, config: Mapping[str, Any], show_progress: bool = True) -> None:
        self.config = dict(config)
        self.settings = DistillSettings.from_config(self.config.get("distill"))
        run = dict(self.config.get("run") or {})
        if not run.get("output_dir"):
            raise ValueError("`run.output_dir` is required")
        self.output_dir = Path(run["output_dir"])
        self.seed = int(run.get("seed", 0))
        self.max_steps = int(run.get("max_steps", 1000))
        if self.max_steps < 1:
            raise ValueError(f"`run.max_steps` must be >= 1; got {self.max_steps}")
        use_cuda = not run.get("cpu", False) and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.show_progress = show_progress
        if self.settings.teacher is None:
            raise ValueError("`distill.teacher` (a DepthLab checkpoint folder or hub id) is required")
        teacher = models_from_depthlab(self.settings.teacher)
        self.models = ConsistencyModels(teacher, self.settings).to(self.device)
        self.scheduler = LCMScheduler(
            **lcm_config_from(teacher.scheduler_config, self.settings.num_ddim_timesteps)
        )
        self.batch_size = int((self.config.get("batch") or {}).get("micro_batch_size", 4))
        self.dataset = self._dataset(teacher)
        optim_cfg = dict(self.config.get("optim") or {})
        self.max_grad_norm = float(optim_cfg.get("max_grad_norm", 0.0) or 0.0)
        self.optimizer = build_optimizer(self.models.trainable_parameters(), optim_cfg)
        self.lr_schedule = build_lr_schedule(self.optimizer, optim_cfg.get("lr_schedule") or {})

    def _dataset(self, teacher: TrainingModels) -> TrainingDataset:
        data_cfg = dict(self.config.get("data") or {})
        specs = data_cfg.get("datasets") or []
        if not specs:
            raise ValueError("`data.datasets` must list at least one dataset")
        fill = str(data_cfg.get("fill", "linear_fast"))
        if fill not in FILL_MODES:
            raise ValueError(f"`data.fill` must be one of {FILL_MODES}; got {fill!r}")
        return TrainingDataset(
            [(build_dataset(spec), float(spec.get("weight", 1.0))) for spec in specs],
            MaskMixture.from_config(self.config.get("masks") or {}),
            data_cfg.get("size", (64, 64)),
            self.seed,
            teacher.image_processor,
            AugmentationConfig.from_config(data_cfg.get("augmentation")),
            NormalizationConfig.from_config(self.config.get("normalization")),
            fill,
        )

    def step_generator(self, step: int) -> torch.Generator:
        seed = int(np.random.SeedSequence([self.seed, int(step), 7]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    def train(self) -> dict[str, Any]:
        """Distil for ``run.max_steps`` steps, export the student; returns (and writes) the summary."""
        from tqdm.auto import tqdm

        self.output_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.output_dir / "config.yaml")
        sampler = PositionBatchSampler(0, self.max_steps, self.batch_size, 1)
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, num_workers=0)
        log_every = int((self.config.get("logging") or {}).get("every", 20))
        params = self.models.trainable_parameters()
        history: list[dict[str, float]] = []
        window: list[float] = []
        start_time = time.perf_counter()
        progress = tqdm(total=self.max_steps, desc="distilling", disable=not self.show_progress)
        for step, batch in enumerate(loader):
            loss, stats = distillation_loss(self.models, self.scheduler, batch, self.step_generator(step))
            if not math.isfinite(stats["loss"]):
                raise FloatingPointError(f"distillation loss is {stats['loss']} at step {step}")
            loss.backward()
            if self.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
            self.optimizer.step()
            self.lr_schedule.step()
            self.optimizer.zero_grad(set_to_none=True)
            update_target(self.models, self.settings.ema_decay)
            window.append(stats["loss"])
            progress.update(1)
            if (step + 1) % log_every == 0 or step + 1 == self.max_steps:
                row = {
                    "step": step + 1,
                    "loss": float(np.mean(window)),
                    "elapsed_s": time.perf_counter() - start_time,
                }
                history.append(row)
                progress.set_postfix(loss=f"{row['loss']:.4f}")
                window = []
        progress.close()
        seconds = time.perf_counter() - start_time
        export = self.export()
        summary = {
            "steps": self.max_steps,
            "train_seconds": seconds,
            "teacher": self.settings.teacher,
            "export": str(export),
            "history": history,
        }
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        with (self.output_dir / "metrics.csv").open("w") as handle:
            handle.write("step,loss,elapsed_s\n")
            handle.writelines(f"{r['step']},{r['loss']:.6f},{r['elapsed_s']:.2f}\n" for r in history)
        return summary

    def export(self, which: str = "student") -> Path:
        """``save_pretrained`` of the student with its LCM scheduler -> ``<output_dir>/final/depthlab``."""
        pipe = build_student_pipeline(self.models, which)
        return pipe.save_pretrained(self.output_dir / "final" / "depthlab", overwrite=True)


def run_distillation(config: Mapping[str, Any], show_progress: bool = True) -> dict[str, Any]:
    """Build a :class:`Distiller` from ``config`` and run it."""
    return Distiller(config, show_progress).train()
