"""Tiny random-weight models with the real architecture families (tests, smoke runs, golden cases).

The configurations are those of the golden test checkpoints (``../shared/golden``): VAE channels
(16, 32, 32, 32), U-Net channels (8, 16, 32, 32) with 1024-d cross-attention, a 2-layer CLIP
vision tower; the scheduler is Marigold's (DDIM, v-prediction).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from depthlab.models.components import ImageProjection, remove_output_head
from depthlab.models.conditioning import ESTIMATION_IN_CHANNELS, REFERENCE_IN_CHANNELS

__all__ = [
    "MARIGOLD_SCHEDULER_CONFIG",
    "TINY_VAE_CONFIG",
    "TINY_UNET_CONFIG",
    "TINY_CLIP_VISION_CONFIG",
    "tiny_components",
]

# Marigold's scheduler (``prs-eth/marigold-depth-v1-0/scheduler/scheduler_config.json``).
MARIGOLD_SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
}
TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "block_out_channels": (16, 32, 32, 32),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}
TINY_UNET_CONFIG: dict[str, Any] = {
    "block_out_channels": (8, 16, 32, 32),
    "layers_per_block": 1,
    "attention_head_dim": (1, 2, 4, 4),
    "norm_num_groups": 4,
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
}
TINY_CLIP_VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1024,
    "hidden_act": "gelu",
}


def tiny_components(seed: int = 0) -> dict[str, Any]:
    """The tiny models of a DepthLab pipeline, initialised from ``seed`` (global RNG untouched).

    Returns:
        ``vae``, ``reference_unet`` (4 channels, no output head), ``estimation_unet`` (12
        channels), ``image_encoder``, ``image_projection`` (1024 -> 1024) and ``scheduler``: the
        keyword arguments of :class:`~depthlab.pipeline.DepthLabPipeline`.
    """
    with torch.random.fork_rng(devices=[]):  # module initialisation draws from the global RNG
        torch.manual_seed(seed)
        vae = AutoencoderKL(**TINY_VAE_CONFIG)
        reference_unet, estimation_unet = (
            UNet2DConditionModel(**{**TINY_UNET_CONFIG, "in_channels": channels})
            for channels in (REFERENCE_IN_CHANNELS, ESTIMATION_IN_CHANNELS)
        )
        remove_output_head(reference_unet)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP_VISION_CONFIG))
        image_projection = ImageProjection(1024, 1024)
    return {
        "vae": vae,
        "reference_unet": reference_unet,
        "estimation_unet": estimation_unet,
        "image_encoder": image_encoder,
        "image_projection": image_projection,
        "scheduler": DDIMScheduler(**MARIGOLD_SCHEDULER_CONFIG),
    }
