"""Training objective: DDPM noising of the depth latent, v-prediction MSE, reference fusion.

Per micro-batch (shapes for ``B`` images of ``H x W``, latents ``h = H / 8``, ``w = W / 8``):

1. Frozen encoders (no grad): VAE latents of the RGB image, the normalised depth, the mask
   (``2 m - 1``, 1 = unknown) and the masked depth, each ``[B, 4, h, w]``, built by
   :mod:`depthlab.models.conditioning` exactly as the pipeline builds them; CLIP
   ``image_embeds`` ``[B, 1024]``.
2. Timesteps ``t ~ U{0, ..., T-1}``; noise ``eps`` Gaussian or multi-resolution (pyramid) noise as
   in Marigold (:func:`multi_resolution_noise`); ``z_t = add_noise(z_depth, eps, t)``; target
   ``v = get_velocity(z_depth, eps, t)`` (the scheduler is v-prediction).
3. :class:`DepthLabTrainModule`: context = image projection of ``image_embeds`` ``[B, 1, 1024]``;
   the reference U-Net runs on the RGB latent at timestep 0 inside
   ``ReferenceAttention.capture()`` (its self-attention inputs are stored with their autograd
   graph, no float16 rounding); the estimation U-Net predicts ``v`` from
   ``cat([z_t, mask latent, masked-depth latent])`` ``[B, 12, h, w]``, attending to them.
4. Loss: weighted MSE over latent cells; weight 0 on cells that contain an invalid GT pixel
   (max-pool of the invalid mask, as Marigold), ``unknown_weight`` on cells that contain an
   unknown pixel, 1 elsewhere.

All randomness (timesteps, noise) comes from the ``torch.Generator`` passed in (CPU), so a
micro-batch is reproducible from its seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from torch import nn

from depthlab.models import conditioning
from depthlab.models.components import ImageProjection
from depthlab.models.reference_attention import ReferenceAttention

__all__ = [
    "ObjectiveConfig",
    "DepthLabTrainModule",
    "multi_resolution_noise",
    "latent_loss_weights",
    "compute_loss",
    "encode_batch",
    "noise_scheduler_from_config",
    "DOWNSCALE_STRATEGIES",
]

DOWNSCALE_STRATEGIES = ("original", "every_layer", "power_of_two", "random_step")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Objective settings (``objective:`` section of the config)."""

    multi_res_noise: bool = True
    multi_res_strength: float = 0.9
    multi_res_annealed: bool = True
    multi_res_downscale: str = "original"
    unknown_weight: float = 1.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ObjectiveConfig:
        config = dict(config or {})
        noise = dict(config.get("multi_res_noise") or {})
        strategy = noise.get("downscale_strategy", "original")
        if strategy not in DOWNSCALE_STRATEGIES:
            raise ValueError(
                f"`objective.multi_res_noise.downscale_strategy` must be one of {DOWNSCALE_STRATEGIES}; "
                f"got {strategy!r}"
            )
        unknown_weight = float(config.get("unknown_weight", 1.0))
        if unknown_weight < 0:
            raise ValueError(f"`objective.unknown_weight` must be >= 0; got {unknown_weight}")
        return cls(
            multi_res_noise=bool(noise.get("enabled", True)),
            multi_res_strength=float(noise.get("strength", 0.9)),
            multi_res_annealed=bool(noise.get("annealed", True)),
            multi_res_downscale=strategy,
            unknown_weight=unknown_weight,
        )


class DepthLabTrainModule(nn.Module):
    """The trainable part as one module (one DDP wrapper): projection + reference + estimation U-Net."""

    def __init__(
        self,
        reference_unet: UNet2DConditionModel,
        estimation_unet: UNet2DConditionModel,
        image_projection: ImageProjection,
    ) -> None:
        super().__init__()
        self.reference_unet = reference_unet
        self.estimation_unet = estimation_unet
        self.image_projection = image_projection
        # The module owns these U-Nets for training: its processors stay installed. A pipeline
        # built around them (validation, export) installs its own only during a call.
        self.fusion = ReferenceAttention(reference_unet, estimation_unet, fp16_rounding=False)
        self.fusion.install()

    def forward(
        self,
        rgb_latent: torch.Tensor,
        unet_input: torch.Tensor,
        timesteps: torch.Tensor,
        image_embeds: torch.Tensor,
    ) -> torch.Tensor:
        """``rgb_latent [B, 4, h, w]``, ``unet_input [B, 12, h, w]``, ``timesteps [B]``,
        ``image_embeds [B, D]`` -> predicted v ``[B, 4, h, w]``.
        """  # noqa: D205
        context = self.image_projection(image_embeds)  # [B, 1, C]
        with self.fusion.capture():
            self.reference_unet(rgb_latent, torch.zeros_like(timesteps), encoder_hidden_states=context)
        return self.estimation_unet(unet_input, timesteps, encoder_hidden_states=context).sample


def multi_resolution_noise(
    shape: tuple[int, int, int, int],
    generator: torch.Generator,
    strength: float | torch.Tensor = 0.9,
    downscale_strategy: str = "original",
) -> torch.Tensor:
    """Pyramid noise (Marigold's ``multi_res_noise_like``; CPU float32 ``[B, C, h, w]``, unit std).

    Gaussian noise plus, for levels ``i = 1, 2, ...``, Gaussian noise drawn at a coarser size,
    bilinearly upsampled and weighted by ``strength ** i``; the sum is divided by its standard
    deviation. Level sizes (``h_i, w_i``, at least 1; the loop stops at size 1 or 10 levels):

    * ``"original"``: ``r ~ U[2, 4)`` per level, size ``int(size_{i-1} / r ** i)``;
    * ``"every_layer"``: halve the size, ``floor(log2(min(h, w)))`` levels;
    * ``"power_of_two"``: ``int(size_{i-1} / 2 ** i)``;
    * ``"random_step"``: ``r ~ U[2, 4)``, ``int(size_{i-1} / r)``.

    ``strength`` may be a ``[B]`` tensor (per-sample, e.g. annealed with the timestep).
    """
    if downscale_strategy not in DOWNSCALE_STRATEGIES:
        raise ValueError(
            f"`downscale_strategy` must be one of {DOWNSCALE_STRATEGIES}; got {downscale_strategy!r}"
        )
    batch, channels, height, width = shape
    if torch.is_tensor(strength):
        strength = strength.reshape(-1, 1, 1, 1).float()
    noise = torch.randn(shape, generator=generator)
    h, w = height, width
    levels = int(math.log2(max(1, min(height, width)))) if downscale_strategy == "every_layer" else 10
    for level in range(1, levels + 1):
        if downscale_strategy == "original":
            ratio = float(torch.rand(1, generator=generator)) * 2 + 2
            h, w = max(1, int(h / ratio**level)), max(1, int(w / ratio**level))
        elif downscale_strategy == "every_layer":
            h, w = max(1, h // 2), max(1, w // 2)
        elif downscale_strategy == "power_of_two":
            h, w = max(1, int(h / 2**level)), max(1, int(w / 2**level))
        else:
            ratio = float(torch.rand(1, generator=generator)) * 2 + 2
            h, w = max(1, int(h / ratio)), max(1, int(w / ratio))
        coarse = torch.randn((batch, channels, h, w), generator=generator)
        noise = noise + F.interpolate(coarse, size=(height, width), mode="bilinear") * strength**level
        if h == 1 or w == 1:
            break
    return noise / noise.std()


def latent_loss_weights(
    valid: torch.Tensor, unknown: torch.Tensor, unknown_weight: float = 1.0, factor: int = 8
) -> torch.Tensor:
    """Per-latent-cell loss weight ``[B, 1, h, w]`` from pixel masks ``[B, 1, H, W]`` (module docstring)."""
    invalid_cell = F.max_pool2d(1.0 - valid.float(), factor, factor)  # 1 where any pixel is invalid
    weight = 1.0 - invalid_cell
    if unknown_weight != 1.0:
        unknown_cell = F.max_pool2d(unknown.float(), factor, factor)
        weight = weight * (1.0 + (unknown_weight - 1.0) * unknown_cell)
    return weight


@torch.no_grad()
def encode_batch(
    vae: AutoencoderKL, image_encoder: nn.Module, batch: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Frozen-encoder outputs of a collated batch (see :class:`~depthlab.training.data.TrainingDataset`).

    The VAE latents come from :func:`depthlab.models.conditioning.encode_conditioning`, the
    function the pipeline uses, so training sees exactly the inference-time model input.

    Returns:
        ``rgb``, ``depth``, ``mask``, ``masked_depth``: float32 ``[B, 4, h, w]``;
        ``image_embeds``: float32 ``[B, D]``.
    """
    latents = conditioning.encode_conditioning(
        vae,
        batch["rgb"],  # uint8 [B, H, W, 3]
        batch["unknown"],  # [B, 1, H, W], 1 = unknown
        batch["masked_depth"],  # [B, 1, H, W]
        batch["depth_norm"],  # [B, 1, H, W]
    )
    pixel_values = batch["clip_pixel_values"].to(image_encoder.device, image_encoder.dtype)
    image_embeds = image_encoder(pixel_values).image_embeds.float()  # [B, D]
    return {
        "rgb": latents.rgb.float(),
        "depth": latents.depth.float(),
        "mask": latents.mask.float(),
        "masked_depth": latents.masked_depth.float(),
        "image_embeds": image_embeds,
    }


def compute_loss(
    module: nn.Module,
    vae: AutoencoderKL,
    image_encoder: nn.Module,
    noise_scheduler: DDPMScheduler,
    batch: Mapping[str, torch.Tensor],
    generator: torch.Generator,
    config: ObjectiveConfig = ObjectiveConfig(),
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted v-prediction MSE of one micro-batch; returns ``(loss, stats)``.

    ``module`` is a :class:`DepthLabTrainModule` (possibly wrapped by DDP). The caller clears the
    stored reference features (``module.fusion.clear()``) after ``backward``.
    """
    encoded = encode_batch(vae, image_encoder, batch)
    depth_latent = encoded["depth"]  # [B, 4, h, w]
    size = depth_latent.shape[0]
    num_train_timesteps = int(noise_scheduler.config.num_train_timesteps)
    timesteps = torch.randint(0, num_train_timesteps, (size,), generator=generator)  # [B] CPU
    if config.multi_res_noise:
        strength: float | torch.Tensor = config.multi_res_strength
        if config.multi_res_annealed:
            strength = strength * (timesteps.float() / num_train_timesteps)
        shape = tuple(depth_latent.shape)
        noise = multi_resolution_noise(shape, generator, strength, config.multi_res_downscale)
    else:
        noise = torch.randn(tuple(depth_latent.shape), generator=generator)
    device = depth_latent.device
    noise, timesteps = noise.to(device), timesteps.to(device)
    noisy = noise_scheduler.add_noise(depth_latent, noise, timesteps)
    target = noise_scheduler.get_velocity(depth_latent, noise, timesteps)
    unet_input = conditioning.estimation_input(
        noisy, encoded["mask"], encoded["masked_depth"]
    )  # [B, 12, h, w]
    prediction = module(encoded["rgb"], unet_input, timesteps, encoded["image_embeds"]).float()
    weight = latent_loss_weights(
        batch["valid"].to(device), batch["unknown"].to(device), config.unknown_weight
    )  # [B, 1, h, w]
    per_cell = ((prediction - target) ** 2).mean(dim=1, keepdim=True)
    total_weight = weight.sum()
    loss = (per_cell * weight).sum() / total_weight.clamp_min(1e-8)
    stats = {"loss": float(loss.detach()), "timestep_mean": float(timesteps.float().mean())}
    return loss, stats


def noise_scheduler_from_config(scheduler_config: Mapping[str, Any]) -> DDPMScheduler:
    """DDPM scheduler (training noise) from Marigold's DDIM scheduler config (same betas, v-pred)."""
    keys = (
        "num_train_timesteps",
        "beta_start",
        "beta_end",
        "beta_schedule",
        "trained_betas",
        "prediction_type",
    )
    config = {k: scheduler_config[k] for k in keys if k in scheduler_config}
    if config.get("prediction_type", "v_prediction") != "v_prediction":
        raise ValueError(f"the scheduler must be v-prediction; got {config.get('prediction_type')!r}")
    return DDPMScheduler(**config)
