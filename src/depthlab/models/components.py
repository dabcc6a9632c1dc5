"""Small model components of DepthLab that are not stock diffusers/transformers models."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

__all__ = ["ImageProjection", "REFERENCE_HEAD_PREFIXES", "remove_output_head"]

# The reference U-Net's output is never used: only the inputs of its self-attention layers are.
REFERENCE_HEAD_PREFIXES = ("conv_norm_out.", "conv_out.")


class ImageProjection(ModelMixin, ConfigMixin):
    """Linear map of the CLIP image embedding to the U-Nets' cross-attention context.

    The state-dict keys (``mapping_layer.weight``, ``mapping_layer.bias``) are those of the
    original ``DepthLab/mapping_layer.pth``.
    """

    @register_to_config
    def __init__(self, in_features: int = 1024, out_features: int = 1024) -> None:
        super().__init__()
        self.mapping_layer = nn.Linear(in_features, out_features)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """``[B, in_features]`` CLIP ``image_embeds`` -> ``[B, 1, out_features]`` context."""
        return self.mapping_layer(image_embeds[:, None])


def remove_output_head(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """Drop the output head (``conv_norm_out``, ``conv_act``, ``conv_out``) of a reference U-Net.

    Explicit architecture change: the original reference U-Net checkpoint has no such tensors and
    the reference U-Net's output is discarded, so its forward pass ends with the last up block.
    Its return value is then the ``[B, C0, H, W]`` feature map of the last up block.
    """
    unet.conv_norm_out = None
    unet.conv_act = None
    unet.conv_out = nn.Identity()
    return unet
