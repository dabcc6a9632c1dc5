"""Autoencoder warm-up of a randomly initialised (tiny) VAE, for smoke runs only.

The real recipe freezes Stable Diffusion's pretrained VAE. A tiny random VAE cannot encode or
decode depth, so before training a tiny model the smoke config first fits it as a deterministic
autoencoder (posterior mean -> decoder, MSE) on the four kinds of images the pipeline encodes:
RGB, normalised depth, mask (``2 m - 1``) and masked depth, each repeated to 3 channels, drawn
from the training stream (positions offset so they do not coincide with diffusion batches). A
small penalty ``latent_penalty * mean(z ** 2)`` keeps the latents bounded; afterwards
``scaling_factor`` is set to ``1 / std`` of the latents of one batch, as Stable Diffusion's
0.18215 makes its latents unit-variance. The VAE is then frozen like a pretrained one.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

__all__ = ["warmup_vae"]

logger = logging.getLogger(__name__)

_POSITION_OFFSET = 1 << 40  # keeps warm-up samples apart from the diffusion sample stream


def _images(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    rgb = batch["rgb_norm"]
    depth = batch["depth_norm"].repeat(1, 3, 1, 1)
    mask = (batch["unknown"] * 2.0 - 1.0).repeat(1, 3, 1, 1)
    masked = batch["masked_depth"].repeat(1, 3, 1, 1)
    return torch.cat([rgb, depth, mask, masked])  # [4B, 3, H, W]


def warmup_vae(
    vae: AutoencoderKL,
    dataset: Any,
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    latent_penalty: float = 1e-3,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, float]:
    """Fit ``vae`` as an autoencoder for ``steps`` steps; returns stats (final loss, scaling factor).

    Args:
        vae: the VAE (trained in place, left in eval mode with ``requires_grad`` False).
        dataset: a :class:`~depthlab.training.data.TrainingDataset`.
        steps: optimizer steps (Adam).
        batch_size: training samples per step (x4 images).
        lr: Adam learning rate.
        latent_penalty: weight of ``mean(z ** 2)``.
        seed: seed of the sample positions.
        show_progress: tqdm bar.
    """
    vae.train()
    vae.requires_grad_(True)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    device = vae.device
    loss_value = float("nan")
    progress = tqdm(range(steps), desc="VAE warm-up", disable=not show_progress, leave=False)
    for step in progress:
        first = _POSITION_OFFSET + (seed * 1_000_003 + step) * batch_size
        batch = torch.utils.data.default_collate([dataset[first + j] for j in range(batch_size)])
        images = _images(batch).to(device)
        moments = vae.quant_conv(vae.encoder(images))
        latent = moments[:, : moments.shape[1] // 2]
        decoded = vae.decoder(vae.post_quant_conv(latent))
        loss = torch.nn.functional.mse_loss(decoded, images) + latent_penalty * latent.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
        progress.set_postfix(loss=f"{loss_value:.4f}")
    vae.eval()
    vae.requires_grad_(False)
    with torch.no_grad():
        first = _POSITION_OFFSET - 4 * batch_size
        batch = torch.utils.data.default_collate([dataset[first + j] for j in range(batch_size)])
        moments = vae.quant_conv(vae.encoder(_images(batch).to(device)))
        std = float(moments[:, : moments.shape[1] // 2].std())
    scaling_factor = 1.0 / max(std, 1e-6)
    vae.register_to_config(scaling_factor=scaling_factor)
    logger.info(
        "VAE warm-up: %d steps, final loss %.5f, scaling factor %.5f", steps, loss_value, scaling_factor
    )
    return {"vae_warmup_loss": loss_value, "vae_scaling_factor": scaling_factor}
