"""DepthLab trainer on Hugging Face accelerate (1 process, multi-GPU, multi-node: same code).

Launch with ``depthlab train --config <name or path> [key=value ...]`` (one process) or
``accelerate launch --multi_gpu --num_processes N -m depthlab.training --config ...`` (add
``run.cpu=true`` for CPU processes with gloo; accelerate's ``--cpu`` flag starts one process).

One optimizer step = ``accumulation_steps`` micro-batches of ``micro_batch_size`` samples on each
of the ``P`` processes; ``accumulation_steps = effective_batch_size / (micro_batch_size * P)``
must be an integer. Gradients are synchronised on the last micro-batch only (``no_sync``).

Run folder (``run.output_dir``)::

    config.yaml                  the merged config (+ ``_runtime``: world size, accumulation, versions)
    metrics.csv                  step, loss, lr, grad norm, samples/s, elapsed seconds
    validation.csv               step, per-protocol and mean metrics of the held-out frames
    tensorboard/                 (``logging.tensorboard: true``)
    checkpoints/step_XXXXXXX/    accelerate state (model, optimizer, RNG) + lr schedule + EMA +
                                 trainer_state.json (+ vae.safetensors after a VAE warm-up)
    final/depthlab/              ``DepthLabPipeline.save_pretrained`` export
    final/original/              original-layout export (DepthLab/*.pth, marigold-depth-v1-0/, CLIP)
    summary.json                 first/last validation, timings

Resume (``run.resume: latest`` or a checkpoint path) restores model, optimizer, LR schedule,
EMA and RNG states and continues at the saved step; the data order and every random draw are
functions of ``(seed, step, micro-batch, process)`` (see :mod:`depthlab.training.data`), so the
resumed run computes exactly what the uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depthlab.config import save_config
from depthlab.masks import MaskMixture
from depthlab.models.loading import resolve_dtype
from depthlab.training.data import (
    PositionBatchSampler,
    TrainingDataset,
    ValidationItem,
    build_dataset,
    build_validation_items,
)
from depthlab.training.export import build_pipeline, export_original_layout, export_save_pretrained
from depthlab.training.model_setup import TrainingModels, build_training_models
from depthlab.training.objective import (
    DepthLabTrainModule,
    ObjectiveConfig,
    compute_loss,
    noise_scheduler_from_config,
)
from depthlab.training.optim import EMA, build_lr_schedule, build_optimizer
from depthlab.training.sample import FILL_MODES, AugmentationConfig, NormalizationConfig

logger = logging.getLogger(__name__)

__all__ = ["Trainer", "ValidationSettings", "run_validation", "micro_batch_seed", "find_checkpoint"]

_CHECKPOINT_PREFIX = "step_"


def micro_batch_seed(seed: int, step: int, index: int) -> int:
    """Seed of the noise/timestep generator of micro-batch ``index`` of optimizer step ``step``.

    ``index = micro * processes + rank`` enumerates the micro-batches of a step in the order of the
    sample stream, so 1 process x 2 accumulation steps and 2 processes x 1 step draw the same
    samples and the same noise (and reach the same weights up to float reduction order).
    """
    return int(np.random.SeedSequence([int(seed), int(step), int(index)]).generate_state(1)[0])


def find_checkpoint(output_dir: str | Path, resume: str | Path) -> Path:
    """``"latest"`` -> the highest ``checkpoints/step_*`` of ``output_dir``; else the given folder."""
    if str(resume) == "latest":
        folder = Path(output_dir) / "checkpoints"
        candidates = sorted(folder.glob(f"{_CHECKPOINT_PREFIX}*")) if folder.is_dir() else []
        candidates = [c for c in candidates if (c / "trainer_state.json").is_file()]
        if not candidates:
            raise FileNotFoundError(f"`run.resume`='latest' but {folder} holds no complete checkpoint")
        return candidates[-1]
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(
            f"`run.resume`={str(resume)!r} is not a checkpoint folder (no trainer_state.json)"
        )
    return path


# ---------------------------------------------------------------------------------- validation
@dataclass(frozen=True)
class ValidationSettings:
    """How the pipeline is run on held-out frames (``validation:`` section)."""

    num_inference_steps: int = 50
    processing_resolution: int = 0
    strength: float = 0.8
    fill_mode: str = "exact"
    seed: int = 0
    metrics: tuple[str, ...] = ("abs_rel", "rmse", "delta1")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ValidationSettings:
        return cls(
            num_inference_steps=int(config.get("num_inference_steps", 50)),
            processing_resolution=int(config.get("processing_resolution", 0)),
            strength=float(config.get("strength", 0.8)),
            fill_mode=str(config.get("fill_mode", "exact")),
            seed=int(config.get("seed", 0)),
            metrics=tuple(config.get("metrics", ("abs_rel", "rmse", "delta1"))),
        )


def run_validation(
    pipe: Any, items: Sequence[ValidationItem], settings: ValidationSettings
) -> tuple[dict[str, float], list[np.ndarray]]:
    """Run ``pipe`` on every item (generator seeded ``settings.seed + i``), score the unknown region.

    Returns:
        ``(metrics, predictions)``: metric means over items (``<metric>`` overall and
        ``<metric>/<protocol>``), and the predicted depth ``[H, W]`` of every item.
    """
    from depthlab.evaluation.metrics import compute_metrics, region_mask

    per_item: list[tuple[str, dict[str, float]]] = []
    predictions = []
    for index, item in enumerate(items):
        generator = torch.Generator().manual_seed(settings.seed + index)
        out = pipe(
            item.rgb,
            np.where(item.known_mask, item.depth, 0.0).astype(np.float32),
            item.known_mask,
            num_inference_steps=settings.num_inference_steps,
            processing_resolution=settings.processing_resolution,
            strength=settings.strength,
            generator=generator,
            show_progress_bar=False,
            fill_mode=settings.fill_mode,
        )
        prediction = np.asarray(out.depth, dtype=np.float32)
        predictions.append(prediction)
        scored = region_mask(item.valid, item.known_mask, "unknown")
        if scored.any():
            per_item.append(
                (item.protocol, compute_metrics(prediction, item.depth, scored, settings.metrics))
            )
    return _mean_metrics(per_item, settings.metrics), predictions


def nearest_fill_metrics(items: Sequence[ValidationItem], metrics: Sequence[str]) -> dict[str, float]:
    """Reference numbers of the nearest-neighbour fill on the same frames and masks."""
    from depthlab.evaluation.metrics import compute_metrics, region_mask
    from depthlab.preprocessing import nearest_fill

    per_item = []
    for item in items:
        filled = nearest_fill(np.where(item.known_mask, item.depth, 0.0).astype(np.float32), item.known_mask)
        scored = region_mask(item.valid, item.known_mask, "unknown")
        if scored.any():
            per_item.append((item.protocol, compute_metrics(filled, item.depth, scored, metrics)))
    return _mean_metrics(per_item, metrics)


def _mean_metrics(per_item: list[tuple[str, dict[str, float]]], metrics: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in metrics:
        values = [m[name] for _, m in per_item]
        out[name] = float(np.mean(values)) if values else float("nan")
        for protocol in sorted({p for p, _ in per_item}):
            out[f"{name}/{protocol}"] = float(np.mean([m[name] for p, m in per_item if p == protocol]))
    out["n_items"] = float(len(per_item))
    return out


# ---------------------------------------------------------------------------------- trainer
class Trainer:
    """Train DepthLab from a merged config (see ``src/depthlab/configs/train/base.yaml`` for every key).

    Args:
        config: the merged config mapping.
        show_progress: tqdm bars (main process only).
    """

    def __init__(self, config: Mapping[str, Any], show_progress: bool = True) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs

        self.config = dict(config)
        run = dict(self.config.get("run") or {})
        if not run.get("output_dir"):
            raise ValueError("`run.output_dir` is required")
        self.output_dir = Path(run["output_dir"])
        self.seed = int(run.get("seed", 0))
        self.max_steps = int(run.get("max_steps", 1000))
        if self.max_steps < 1:
            raise ValueError(f"`run.max_steps` must be >= 1; got {self.max_steps}")
        self.stop_at_step = run.get("stop_at_step")
        self.checkpoint_every = int(run.get("checkpoint_every", 0) or 0)
        self.keep_checkpoints = int(run.get("keep_checkpoints", 0) or 0)
        self.show_progress = show_progress

        mixed_precision = self.config.get("mixed_precision", "no")
        mixed_precision = (
            "no" if mixed_precision in (False, None) else str(mixed_precision)
        )  # YAML: no -> False
        if mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"`mixed_precision` must be 'no', 'fp16' or 'bf16'; got {mixed_precision!r}")
        # Checked now, not after hours of training: None stores the weights as they are.
        self.export_dtype = resolve_dtype(
            dict(self.config.get("export") or {}).get("dtype"), default=None, name="export.dtype"
        )
        self.accelerator = Accelerator(
            mixed_precision=mixed_precision,
            cpu=bool(run.get("cpu", False)),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        )
        acc = self.accelerator
        batch = dict(self.config.get("batch") or {})
        self.micro_batch_size = int(batch.get("micro_batch_size", 1))
        effective = int(batch.get("effective_batch_size", self.micro_batch_size * acc.num_processes))
        per_step = self.micro_batch_size * acc.num_processes
        if self.micro_batch_size < 1 or effective < per_step or effective % per_step:
            raise ValueError(
                f"`batch.effective_batch_size`={effective} must be a positive multiple of "
                f"micro_batch_size x processes = {self.micro_batch_size} x {acc.num_processes}"
            )
        self.effective_batch_size = effective
        self.accumulation_steps = effective // per_step

        # Models.
        model_cfg = dict(self.config.get("model") or {})
        self.models: TrainingModels = build_training_models(model_cfg)
        trainable = model_cfg.get("trainable", ["reference_unet", "estimation_unet", "image_projection"])
        self.trainable = self.models.set_trainable(trainable)
        self.module = DepthLabTrainModule(
            self.models.reference_unet, self.models.estimation_unet, self.models.image_projection
        )
        if model_cfg.get("gradient_checkpointing", False):
            for name in ("reference_unet", "estimation_unet"):
                if name in self.trainable:
                    getattr(self.models, name).enable_gradient_checkpointing()
        self.module.train()
        self.noise_scheduler = noise_scheduler_from_config(self.models.scheduler_config)
        self.objective = ObjectiveConfig.from_config(self.config.get("objective"))

        # Data.
        self.dataset = self._build_training_dataset()
        self.vae_warmup_cfg = dict(model_cfg.get("vae_warmup") or {})

        # Optimisation.
        optim_cfg = dict(self.config.get("optim") or {})
        self.max_grad_norm = float(optim_cfg.get("max_grad_norm", 0.0) or 0.0)
        self.optimizer = build_optimizer(self.module.parameters(), optim_cfg)
        self.lr_schedule = build_lr_schedule(self.optimizer, optim_cfg.get("lr_schedule") or {})
        ema_cfg = dict(self.config.get("ema") or {})
        self.ema = (
            EMA(
                self.module.parameters(),
                float(ema_cfg.get("decay", 0.9999)),
                int(ema_cfg.get("update_after", 0)),
            )
            if ema_cfg.get("enabled", False)
            else None
        )
        self.module, self.optimizer = acc.prepare(self.module, self.optimizer)
        acc.register_for_checkpointing(self.lr_schedule)
        if self.ema is not None:
            acc.register_for_checkpointing(self.ema)
        # Frozen encoders on the device, kept in float32 (autocast runs them in the mixed-precision
        # dtype; storing them rounded would also round what the export writes).
        self.models.vae.to(acc.device)
        self.models.image_encoder.to(acc.device)

        self.validation_cfg = dict(self.config.get("validation") or {})
        self.validation_items: list[ValidationItem] | None = None
        self.start_step = 0
        self.vae_warmed = False
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ setup helpers
    @property
    def unwrapped(self) -> DepthLabTrainModule:
        return self.accelerator.unwrap_model(self.module)

    def _build_training_dataset(self) -> TrainingDataset:
        data_cfg = dict(self.config.get("data") or {})
        specs = data_cfg.get("datasets") or []
        if not specs:
            raise ValueError("`data.datasets` must list at least one dataset")
        sources = [(build_dataset(spec), float(spec.get("weight", 1.0))) for spec in specs]
        masks = MaskMixture.from_config(self.config.get("masks") or {})
        fill = str(data_cfg.get("fill", "linear_fast"))
        if fill not in FILL_MODES:
            raise ValueError(f"`data.fill` must be one of {FILL_MODES}; got {fill!r}")
        return TrainingDataset(
            sources,
            masks,
            data_cfg.get("size", (768, 768)),
            self.seed,
            self.models.image_processor,
            AugmentationConfig.from_config(data_cfg.get("augmentation")),
            NormalizationConfig.from_config(self.config.get("normalization")),
            fill,
        )

    def _validation_items(self) -> list[ValidationItem]:
        if self.validation_items is None:
            spec = self.validation_cfg.get("dataset")
            if not spec:
                self.validation_items = []
            else:
                dataset = build_dataset(spec)
                self.validation_items = build_validation_items(
                    dataset,
                    list(self.validation_cfg.get("masks", ["holes:0.3"])),
                    self.validation_cfg.get("limit"),
                    int(self.validation_cfg.get("mask_seed", 0)),
                )
        return self.validation_items

    def _loader(self) -> torch.utils.data.DataLoader:
        acc = self.accelerator
        sampler = PositionBatchSampler(
            self.start_step,
            self.stop_step,
            self.micro_batch_size,
            self.accumulation_steps,
            acc.num_processes,
            acc.process_index,
        )
        workers = int((self.config.get("data") or {}).get("num_workers", 0))
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=workers, persistent_workers=False
        )

    @property
    def stop_step(self) -> int:
        if self.stop_at_step is None:
            return self.max_steps
        return min(self.max_steps, int(self.stop_at_step))

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, step: int) -> Path:
        """Save the full training state after ``step`` optimizer steps."""
        acc = self.accelerator
        folder = self.output_dir / "checkpoints" / f"{_CHECKPOINT_PREFIX}{step:07d}"
        acc.save_state(str(folder))
        if acc.is_main_process:
            if self.vae_warmed:
                from safetensors.torch import save_file

                save_file(
                    {k: v.detach().cpu().contiguous() for k, v in self.models.vae.state_dict().items()},
                    str(folder / "vae.safetensors"),
                )
            state = {
                "step": step,
                "vae_warmed": self.vae_warmed,
                "vae_scaling_factor": float(self.models.vae.config.scaling_factor),
                "num_processes": acc.num_processes,
                "accumulation_steps": self.accumulation_steps,
            }
            (folder / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n")
            self._prune_checkpoints()
        acc.wait_for_everyone()
        return folder

    def _prune_checkpoints(self) -> None:
        if self.keep_checkpoints <= 0:
            return
        folders = sorted((self.output_dir / "checkpoints").glob(f"{_CHECKPOINT_PREFIX}*"))
        for old in folders[: -self.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, folder: Path) -> int:
        """Restore a checkpoint; returns its step."""
        state = json.loads((folder / "trainer_state.json").read_text())
        if (
            int(state.get("accumulation_steps", self.accumulation_steps)) != self.accumulation_steps
            or int(state.get("num_processes", self.accelerator.num_processes))
            != self.accelerator.num_processes
        ):
            logger.warning(
                "resuming with a different process count / accumulation (%s); the data order will differ",
                state,
            )
        if state.get("vae_warmed"):
            from safetensors.torch import load_file

            self.models.vae.load_state_dict(load_file(str(folder / "vae.safetensors")))
            self.models.vae.register_to_config(scaling_factor=float(state["vae_scaling_factor"]))
            self.models.vae.to(self.accelerator.device)
            self.vae_warmed = True
        self.accelerator.load_state(str(folder))
        return int(state["step"])

    # ------------------------------------------------------------------ validation
    def validate(self, step: int) -> dict[str, float] | None:
        """Run the real pipeline on the held-out frames (main process); returns the metrics."""
        acc = self.accelerator
        items = self._validation_items()
        result = None
        if acc.is_main_process and items:
            settings = ValidationSettings.from_config(self.validation_cfg)
            module = self.unwrapped
            module.eval()
            if self.ema is not None:
                self.ema.swap_in()
            try:
                pipe = build_pipeline(self.models, reference_fp16_rounding=False)
                with acc.autocast():
                    result, predictions = run_validation(pipe, items, settings)
                folder = self.output_dir / "validation"
                folder.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(
                    folder / f"step_{step:07d}.npz",
                    **{item.sample_id: p for item, p in zip(items, predictions, strict=True)},
                )
            finally:
                if self.ema is not None:
                    self.ema.swap_out()
                module.train()
            self._append_csv("validation.csv", {"step": step, **result})
            self._log_scalars({f"val/{k}": v for k, v in result.items()}, step)
            logger.info("validation at step %d: %s", step, {k: round(v, 4) for k, v in result.items()})
        acc.wait_for_everyone()
        return result

    # ------------------------------------------------------------------ logging
    def _append_csv(self, name: str, row: Mapping[str, Any]) -> None:
        path = self.output_dir / name
        exists = path.is_file()
        fields = list(row)
        if exists:
            with path.open(newline="") as handle:
                header = next(csv.reader(handle), None)
            if header:
                fields = header + [k for k in row if k not in header]
                if fields != header:  # new columns: rewrite with the wider header
                    with path.open(newline="") as handle:
                        rows = list(csv.DictReader(handle))
                    with path.open("w", newline="") as handle:
                        writer = csv.DictWriter(handle, fieldnames=fields)
                        writer.writeheader()
                        writer.writerows(rows)
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            if not exists:
                writer.writeheader()
            writer.writerow(dict(row))

    def _log_scalars(self, values: Mapping[str, float], step: int) -> None:
        writer = getattr(self, "_tensorboard", None)
        if writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(key, value, step)

    def _open_tensorboard(self) -> None:
        self._tensorboard = None
        if self.accelerator.is_main_process and (self.config.get("logging") or {}).get("tensorboard", False):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is in the [train] extra
                logger.warning("tensorboard is not installed; logging to CSV only")
                return
            self._tensorboard = SummaryWriter(str(self.output_dir / "tensorboard"))

    # ------------------------------------------------------------------ main loop
    def train(self) -> dict[str, Any]:
        """Run (or resume) training; returns the summary (also written to ``summary.json``)."""
        from tqdm.auto import tqdm

        acc = self.accelerator
        run = dict(self.config.get("run") or {})
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            runtime = {
                "num_processes": acc.num_processes,
                "accumulation_steps": self.accumulation_steps,
                "device": str(acc.device),
                "trainable": self.trainable,
                "model_info": self.models.info,
                "torch": str(torch.__version__),
            }
            save_config({**self.config, "_runtime": runtime}, self.output_dir / "config.yaml")
        acc.wait_for_everyone()
        self._open_tensorboard()

        resume = run.get("resume")
        if resume:
            checkpoint = find_checkpoint(self.output_dir, resume)
            self.start_step = self.load_checkpoint(checkpoint)
            logger.info("resumed from %s at step %d", checkpoint, self.start_step)
        elif self.vae_warmup_cfg.get("steps"):
            self._warmup_vae()

        summary: dict[str, Any] = {"start_step": self.start_step}
        every = int(self.validation_cfg.get("every", 0) or 0)
        if self.start_step == 0 and self.validation_cfg.get("at_start", False):
            summary["validation_before"] = self.validate(0)
            if acc.is_main_process and self._validation_items():
                metrics = tuple(self.validation_cfg.get("metrics", ("abs_rel", "rmse", "delta1")))
                summary["nearest_fill"] = nearest_fill_metrics(self._validation_items(), metrics)

        log_every = int((self.config.get("logging") or {}).get("every", 10))
        loader_iter = iter(self._loader())
        start_time = time.perf_counter()
        window_time, window_losses = time.perf_counter(), []
        progress = tqdm(
            total=self.stop_step - self.start_step,
            desc="training",
            disable=not (self.show_progress and acc.is_main_process),
        )
        step = self.start_step
        params = [p for p in self.module.parameters() if p.requires_grad]
        while step < self.stop_step:
            step_loss = 0.0
            for micro in range(self.accumulation_steps):
                batch = next(loader_iter)
                generator = torch.Generator().manual_seed(
                    micro_batch_seed(self.seed, step, micro * acc.num_processes + acc.process_index)
                )
                sync = micro == self.accumulation_steps - 1
                context = contextlib.nullcontext() if sync else acc.no_sync(self.module)
                with context:
                    with acc.autocast():
                        loss, _ = compute_loss(
                            self.module,
                            self.models.vae,
                            self.models.image_encoder,
                            self.noise_scheduler,
                            batch,
                            generator,
                            self.objective,
                        )
                    acc.backward(loss / self.accumulation_steps)
                self.unwrapped.fusion.clear()
                step_loss += float(loss.detach()) / self.accumulation_steps
            grad_norm = float("nan")
            if self.max_grad_norm > 0:
                grad_norm = float(acc.clip_grad_norm_(params, self.max_grad_norm))
            self.optimizer.step()
            self.lr_schedule.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(step)
            step += 1
            progress.update(1)
            mean_loss = float(acc.reduce(torch.tensor(step_loss, device=acc.device), reduction="mean"))
            window_losses.append(mean_loss)
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"loss is {mean_loss} at step {step}")
            if step % log_every == 0 or step == self.stop_step:
                now = time.perf_counter()
                row = {
                    "step": step,
                    "loss": float(np.mean(window_losses)),
                    "lr": self.lr_schedule.get_last_lr()[0],
                    "grad_norm": grad_norm,
                    "samples_per_s": len(window_losses)
                    * self.effective_batch_size
                    / max(now - window_time, 1e-9),
                    "elapsed_s": now - start_time,
                }
                if acc.is_main_process:
                    self._append_csv("metrics.csv", row)
                    self._log_scalars({"train/loss": row["loss"], "train/lr": row["lr"]}, step)
                progress.set_postfix(loss=f"{row['loss']:.4f}")
                self.history.append(row)
                window_time, window_losses = now, []
            if self.checkpoint_every and step % self.checkpoint_every == 0:
                self.save_checkpoint(step)
            if every and step % every == 0 and step != self.stop_step:
                self.validate(step)
        progress.close()
        summary["train_seconds"] = time.perf_counter() - start_time
        summary["end_step"] = step

        if not (self.checkpoint_every and step % self.checkpoint_every == 0) and step > self.start_step:
            self.save_checkpoint(step)
        if step >= self.max_steps:
            if self.validation_cfg.get("at_end", True):
                summary["validation_after"] = self.validate(step)
            summary["export"] = self.export()
        if acc.is_main_process:
            summary["history_tail"] = self.history[-5:]
            (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
        if getattr(self, "_tensorboard", None) is not None:
            self._tensorboard.close()
        acc.wait_for_everyone()
        return summary

    def _warmup_vae(self) -> None:
        from depthlab.training.vae_warmup import warmup_vae

        cfg = self.vae_warmup_cfg
        self.models.vae.to(self.accelerator.device)
        stats = warmup_vae(
            self.models.vae,
            self.dataset,
            int(cfg["steps"]),
            batch_size=int(cfg.get("batch_size", 8)),
            lr=float(cfg.get("lr", 1e-3)),
            latent_penalty=float(cfg.get("latent_penalty", 1e-3)),
            seed=self.seed,
            show_progress=self.show_progress and self.accelerator.is_main_process,
            pool_size=int(cfg.get("pool_size", 64)),
        )
        if self.accelerator.num_processes > 1:  # identical runs, but make sure every process agrees
            from accelerate.utils import broadcast

            for tensor in self.models.vae.state_dict().values():
                tensor.copy_(broadcast(tensor.contiguous()))
        self.vae_warmed = True
        if self.accelerator.is_main_process:
            (self.output_dir / "vae_warmup.json").write_text(json.dumps(stats, indent=2) + "\n")

    # ------------------------------------------------------------------ export
    def export(self) -> dict[str, str]:
        """Write ``final/depthlab`` (save_pretrained) and ``final/original`` (original layout)."""
        acc = self.accelerator
        export_cfg = dict(self.config.get("export") or {})
        paths: dict[str, str] = {}
        if acc.is_main_process:
            use_ema = self.ema is not None and export_cfg.get("ema", True)
            if use_ema:
                self.ema.swap_in()
            try:
                final = self.output_dir / "final"
                if export_cfg.get("save_pretrained", True):
                    paths["save_pretrained"] = str(
                        export_save_pretrained(self.models, final / "depthlab", self.export_dtype)
                    )
                if export_cfg.get("original_layout", True):
                    paths["original_layout"] = str(
                        export_original_layout(self.models, final / "original", self.export_dtype)
                    )
            finally:
                if use_ema:
                    self.ema.swap_out()
        acc.wait_for_everyone()
        return paths
