"""The estimation U-Net's input: the one definition shared by inference and training.

DepthLab conditions its estimation U-Net on three VAE latents besides the noisy depth latent.
Every one of them is built here, and :class:`~depthlab.pipeline.DepthLabPipeline` and
:mod:`depthlab.training.objective` both call these functions, so what a fine-tune learns from is
exactly what inference feeds (``spec/inference.md`` steps 8-9):

==============  =============================================  ======================================
latent          VAE input ``[B, 3, H, W]``                      built by
==============  =============================================  ======================================
RGB             ``x / 255 * 2 - 1`` (float64 math, then f32)     :func:`rgb_to_vae_input`
mask            ``2 m - 1`` with ``m = 1`` where depth unknown   :func:`mask_to_vae_input`
masked depth    linear-filled normalised known depth           :func:`to_vae_input`
depth           normalised (pre-filled) depth                  :func:`to_vae_input`
==============  =============================================  ======================================

Single-channel maps are repeated to three channels. Each is encoded to the posterior *mean* times
the VAE's scaling factor (:func:`encode_latent`; no sampling, as the original), all of them in
one VAE call by default (:func:`encode_conditioning`). The estimation
U-Net's 12 input channels are ``cat([noisy depth latent, mask latent, masked-depth latent])``
(:func:`estimation_input`). The RGB latent feeds the reference U-Net.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import AutoencoderKL

__all__ = [
    "ConditioningLatents",
    "rgb_to_vae_input",
    "mask_to_vae_input",
    "to_vae_input",
    "encode_latent",
    "encode_conditioning",
    "estimation_input",
    "ESTIMATION_IN_CHANNELS",
    "REFERENCE_IN_CHANNELS",
]

ESTIMATION_IN_CHANNELS = 12  # noisy depth latent, mask latent, masked-depth latent (4 each)
REFERENCE_IN_CHANNELS = 4  # RGB latent


def _as_tensor(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = np.ascontiguousarray(x)
        return torch.from_numpy(x if x.flags.writeable else x.copy())
    if isinstance(x, torch.Tensor):
        return x
    raise TypeError(f"`{name}` must be a numpy array or torch tensor; got {type(x).__name__}")


def _as_batch_of_maps(x: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """``[H, W]``, ``[B, H, W]`` or ``[B, 1, H, W]`` -> ``[B, 1, H, W]``."""
    x = _as_tensor(x, name)
    if x.ndim == 2:
        return x[None, None]
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] == 1:
        return x
    raise ValueError(f"`{name}` must be [H, W], [B, H, W] or [B, 1, H, W]; got {tuple(x.shape)}")


def rgb_to_vae_input(rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
    """RGB -> the VAE's input in ``[-1, 1]``, float32 ``[B, 3, H, W]`` (on ``rgb``'s device).

    Args:
        rgb: channels-last ``[H, W, 3]`` or ``[B, H, W, 3]``; uint8 (0-255, the images both
            inference and training see) or floating point in ``[0, 1]``.

    uint8 values go through ``x / 255 * 2 - 1`` in float64 and are then rounded to float32, the
    original release's path (this is the only 8-bit -> float rule of the model input).
    """
    x = _as_tensor(rgb, "rgb")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"`rgb` must be [H, W, 3] or [B, H, W, 3]; got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = (x.to(torch.float64) / 255.0 * 2.0 - 1.0).to(torch.float32)
    elif x.is_floating_point():
        x = x.to(torch.float32) * 2.0 - 1.0
    else:
        raise TypeError(f"`rgb` must be uint8 or floating point in [0, 1]; got {x.dtype}")
    return x.permute(0, 3, 1, 2)  # [B, 3, H, W]


def mask_to_vae_input(unknown: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Unknown mask (1 = unknown, 0 = known) -> ``2 m - 1`` repeated to ``[B, 3, H, W]`` (float32).

    Args:
        unknown: ``[H, W]``, ``[B, H, W]`` or ``[B, 1, H, W]``, bool or {0, 1} numbers. Note the
            polarity: the model's mask input marks the *unknown* pixels (``~known_mask``).
    """
    m = _as_batch_of_maps(unknown, "unknown").to(torch.float32)
    return (m * 2.0 - 1.0).repeat(1, 3, 1, 1)


def to_vae_input(depth: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Normalised depth map ``[H, W]``/``[B, H, W]``/``[B, 1, H, W]`` -> ``[B, 3, H, W]`` float32."""
    return _as_batch_of_maps(depth, "depth").to(torch.float32).repeat(1, 3, 1, 1)


def encode_latent(vae: AutoencoderKL, x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` in [-1, 1] -> latent ``[B, 4, H/8, W/8]`` (posterior mean x scaling factor).

    Runs in the VAE's dtype (``x`` must be on the VAE's execution device); the result has the
    VAE's dtype.
    """
    moments = vae.quant_conv(vae.encoder(x.to(vae.dtype)))  # [B, 8, h, w]
    mean = moments[:, : moments.shape[1] // 2]  # [B, 4, h, w]
    return mean * vae.config.scaling_factor


@dataclass
class ConditioningLatents:
    """VAE latents of one batch, each ``[B, 4, h, w]`` in the VAE's dtype.

    Attributes:
        rgb: the reference U-Net's input.
        mask: latent of the unknown mask.
        masked_depth: latent of the linear-filled known depth.
        depth: latent of the normalised depth (None when not asked for).
    """

    rgb: torch.Tensor
    mask: torch.Tensor
    masked_depth: torch.Tensor
    depth: torch.Tensor | None = None


@torch.no_grad()
def encode_conditioning(
    vae: AutoencoderKL,
    rgb: np.ndarray | torch.Tensor,
    unknown: np.ndarray | torch.Tensor,
    masked_depth: np.ndarray | torch.Tensor,
    depth: np.ndarray | torch.Tensor | None = None,
    device: torch.device | None = None,
    one_call: bool = True,
) -> ConditioningLatents:
    """Encode the model's conditioning inputs, by default all in one VAE call.

    Args:
        vae: the frozen VAE.
        rgb: uint8 ``[B, H, W, 3]`` (see :func:`rgb_to_vae_input`).
        unknown: ``[B, 1, H, W]`` (or ``[H, W]``), 1 = unknown.
        masked_depth: ``[B, 1, H, W]`` linear-filled known depth, normalised.
        depth: ``[B, 1, H, W]`` normalised full depth (the denoising target / start), optional.
        device: where the VAE runs (default: the VAE's device).
        one_call: encode the 3-4 inputs as one ``[3B or 4B, 3, H, W]`` batch (default; fewer
            kernel launches, about 4x the encoder's activation memory) instead of one call each.
            The latents agree to float32 rounding (measured on the golden cases: <= 3e-6, inside
            the 2e-6-per-stage / 5e-5 end-to-end conformance tolerances; see
            ``benchmarks/results/speed_options.md``).

    Returns:
        :class:`ConditioningLatents`, each ``[B, 4, H/8, W/8]``.
    """
    device = vae.device if device is None else device
    inputs = [rgb_to_vae_input(rgb), mask_to_vae_input(unknown), to_vae_input(masked_depth)]
    if depth is not None:
        inputs.append(to_vae_input(depth))
    shapes = {tuple(x.shape) for x in inputs}
    if len(shapes) != 1:
        raise ValueError(
            f"`rgb`, `unknown`, `masked_depth` and `depth` must agree in [B, H, W]; got {sorted(shapes)}"
        )
    if one_call:
        batch = inputs[0].shape[0]
        latents = list(encode_latent(vae, torch.cat(inputs).to(device)).split(batch))  # [B, 4, h, w] each
    else:
        latents = [encode_latent(vae, x.to(device)) for x in inputs]
    return ConditioningLatents(
        rgb=latents[0],
        mask=latents[1],
        masked_depth=latents[2],
        depth=latents[3] if depth is not None else None,
    )


def estimation_input(
    noisy_depth_latent: torch.Tensor, mask_latent: torch.Tensor, masked_depth_latent: torch.Tensor
) -> torch.Tensor:
    """The estimation U-Net's input ``[B, 12, h, w]`` from three ``[B, 4, h, w]`` latents.

    The mask and masked-depth latents may have batch 1 for a larger noisy batch only when they
    were already expanded by the caller; shapes must agree.
    """
    return torch.cat([noisy_depth_latent, mask_latent, masked_depth_latent], dim=1)  # [B, 12, h, w]
