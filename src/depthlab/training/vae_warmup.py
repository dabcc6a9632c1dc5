"""Autoencoder warm-up of a randomly initialised (tiny) VAE, for smoke runs only.

The real recipe freezes Stable Diffusion's pretrained VAE. A tiny random VAE cannot encode or
decode depth, so before training a tiny model the smoke config first fits it as a deterministic
autoencoder (posterior mean -> decoder, MSE) on the depth maps it must encode *and decode*
(normalised depth and masked depth, repeated to 3 channels; RGB and mask latents are only inputs,
for which the random encoder's features suffice), from a pool of ``pool_size`` training samples drawn once from the training stream (positions offset so
they do not coincide with diffusion batches); each step takes ``batch_size`` of them at random,
randomly flipped. A
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
    depth = batch["depth_norm"].repeat(1, 3, 1, 1)
    masked = batch["masked_depth"].repeat(1, 3, 1, 1)
    return torch.cat([depth, masked])  # [2B, 3, H, W]


def warmup_vae(
    vae: AutoencoderKL,
    dataset: Any,
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    latent_penalty: float = 1e-3,
    seed: int = 0,
    show_progress: bool = True,
    pool_size: int = 64,
) -> dict[str, float]:
    """Fit ``vae`` as an autoencoder for ``steps`` steps; returns stats (final loss, scaling factor).

    Args:
        vae: the VAE (trained in place, left in eval mode with ``requires_grad`` False).
        dataset: a :class:`~depthlab.training.data.TrainingDataset`.
        steps: optimizer steps (Adam).
        batch_size: training samples per step (x2 images).
        lr: Adam learning rate.
        latent_penalty: weight of ``mean(z ** 2)``.
        seed: seed of the sample positions.
        show_progress: tqdm bar.
        pool_size: training samples generated once and reused.
    """
    first = _POSITION_OFFSET + seed * 1_000_003
    pool = _images(torch.utils.data.default_collate([dataset[first + j] for j in range(pool_size)]))
    generator = torch.Generator().manual_seed(seed)
    vae.train()
    vae.requires_grad_(True)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    device = vae.device
    loss_value = float("nan")
    progress = tqdm(range(steps), desc="VAE warm-up", disable=not show_progress, leave=False)
    for _ in progress:
        chosen = torch.randperm(pool.shape[0], generator=generator)[: 2 * batch_size]
        images = pool[chosen]
        flip = torch.rand(images.shape[0], generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images).to(device)
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
        moments = vae.quant_conv(vae.encoder(pool.to(device)))
        std = float(moments[:, : moments.shape[1] // 2].std())
    scaling_factor = 1.0 / max(std, 1e-6)
    vae.register_to_config(scaling_factor=scaling_factor)
    logger.info(
        "VAE warm-up: %d steps, final loss %.5f, scaling factor %.5f", steps, loss_value, scaling_factor
    )
    return {"vae_warmup_loss": loss_value, "vae_scaling_factor": scaling_factor}
