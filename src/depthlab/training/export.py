"""Export trained models: ``save_pretrained`` folder and the original release's layout.

Original layout (what ``DepthLabPipeline.from_pretrained`` and the original ``infer.py`` read)::

    <root>/marigold-depth-v1-0/vae/                 config + diffusion_pytorch_model.safetensors
    <root>/marigold-depth-v1-0/unet/config.json     U-Net config (Marigold's, in_channels 8)
    <root>/marigold-depth-v1-0/scheduler/           scheduler_config.json
    <root>/CLIP-ViT-H-14-laion2B-s32B-b79K/         CLIP vision model (config + model.safetensors)
    <root>/DepthLab/denoising_unet.pth              estimation U-Net state dict (12 channels)
    <root>/DepthLab/reference_unet.pth              reference U-Net state dict (4 channels, no head)
    <root>/DepthLab/mapping_layer.pth               {"mapping_layer.weight", "mapping_layer.bias"}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler

from depthlab.models.hub import CLIP_DIR, DEPTHLAB_DIR, MARIGOLD_DIR
from depthlab.training.model_setup import TrainingModels

__all__ = ["build_pipeline", "export_save_pretrained", "export_original_layout"]


def build_pipeline(models: TrainingModels, reference_fp16_rounding: bool = False) -> Any:
    """A :class:`~depthlab.pipeline.DepthLabPipeline` around the (shared, not copied) training modules.

    Building it leaves the U-Nets' (training) attention processors alone; each pipeline call
    installs the pipeline's for its duration and restores them after.
    """
    from depthlab.pipeline import DepthLabPipeline

    return DepthLabPipeline(
        models.vae,
        models.reference_unet,
        models.estimation_unet,
        models.image_encoder,
        models.image_projection,
        DDIMScheduler.from_config(models.scheduler_config),
        image_processor=models.image_processor,
        reference_fp16_rounding=reference_fp16_rounding,
    )


def export_save_pretrained(models: TrainingModels, target: str | Path, dtype: Any = None) -> Path:
    """``DepthLabPipeline.save_pretrained`` of the models (reference fp16 rounding on, as published)."""
    pipe = build_pipeline(models, reference_fp16_rounding=True)
    return pipe.save_pretrained(target, dtype=dtype, overwrite=True)


def _state(module: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    return {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in module.state_dict().items()
    }


def export_original_layout(
    models: TrainingModels, root: str | Path, dtype: torch.dtype | None = None
) -> Path:
    """Write the original release's folder layout (module docstring); returns ``root``."""
    root = Path(root)
    marigold = root / MARIGOLD_DIR
    depthlab = root / DEPTHLAB_DIR
    for folder in (marigold / "unet", depthlab):
        folder.mkdir(parents=True, exist_ok=True)
    models.vae.save_pretrained(marigold / "vae")
    unet_config = {
        "_class_name": "UNet2DConditionModel",
        **{k: list(v) if isinstance(v, tuple) else v for k, v in models.marigold_unet_config.items()},
        "in_channels": 8,
    }
    (marigold / "unet" / "config.json").write_text(json.dumps(unet_config, indent=2) + "\n")
    DDIMScheduler.from_config(models.scheduler_config).save_pretrained(marigold / "scheduler")
    models.image_encoder.save_pretrained(root / CLIP_DIR)
    torch.save(_state(models.estimation_unet, dtype), depthlab / "denoising_unet.pth")
    torch.save(_state(models.reference_unet, dtype), depthlab / "reference_unet.pth")
    torch.save(_state(models.image_projection, dtype), depthlab / "mapping_layer.pth")
    return root
