"""Build the trainable DepthLab models: from Marigold, from published DepthLab weights, or tiny.

Architecture change from Marigold (explicit, strict). Marigold's U-Net takes 8 input channels,
``cat([rgb_latent, depth_latent])``; its ``conv_in.weight`` is ``[C, 8, 3, 3]``. DepthLab needs:

* **reference U-Net**, 4 input channels (RGB latent at timestep 0): ``conv_in`` = Marigold's
  filters of the RGB-latent channels ``0:4`` (same bias). Its output head is removed
  (:func:`~depthlab.models.components.remove_output_head`); only its self-attention inputs are used.
* **estimation U-Net**, 12 input channels ``cat([noisy depth latent, mask latent, masked-depth
  latent])``:

  - ``0:4`` noisy depth latent: Marigold's depth filters ``W_d = W[:, 4:8]`` times ``1 - a``;
  - ``4:8`` mask latent: zeros (the new input starts with no effect, ControlNet-style; its
    weights still receive gradients because the input is non-zero);
  - ``8:12`` masked-depth latent (``masked_depth_init``):
    ``"half_depth"`` (default): ``W_d`` times ``a`` with ``a = masked_depth_fraction = 0.5``.
    Justification: for a fully known input at low noise the masked-depth latent equals the clean
    depth latent and the noisy latent is close to it, so the first-layer response
    ``(1 - a) W_d z_t + a W_d z_known ~ W_d z_t`` matches Marigold's depth path and the pretrained
    layers above see the activation statistics they were trained on; at high noise the
    masked-depth half carries the signal the noisy half lacks. ``"rgb"`` copies Marigold's RGB
    filters (the masked depth takes the role of Marigold's conditioning image; depth channels
    keep their full weight), ``"zero"`` zero-initialises them (depth channels keep full weight).

  The bias is Marigold's ``conv_in.bias``. Every other tensor is copied from Marigold unchanged.

Both U-Nets get their own copy of the tensors (no sharing). The VAE and the CLIP image encoder
are frozen; the U-Nets and the image projection are trainable (configurable). The image
projection (CLIP ``image_embeds`` -> cross-attention context) is new when starting from Marigold:
PyTorch's default ``nn.Linear`` initialisation (``projection_init="default"``) or the identity
(``"identity"``, CLIP's embedding passed through unchanged).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from torch import nn

from depthlab.models.components import REFERENCE_HEAD_PREFIXES, ImageProjection, remove_output_head
from depthlab.models.hub import CLIP_DIR, HUB_IDS, MARIGOLD_DIR, CheckpointNotFoundError, hub_snapshot
from depthlab.models.loading import (
    CheckpointError,
    build_from_config,
    clip_image_processor,
    load_clip_vision,
    load_component_weights,
    load_pipeline_components,
    load_strict,
    resolve_checkpoints,
)
from depthlab.models.tiny import (
    MARIGOLD_SCHEDULER_CONFIG,
    TINY_CLIP_VISION_CONFIG,
    TINY_UNET_CONFIG,
    TINY_VAE_CONFIG,
    tiny_components,
)

logger = logging.getLogger(__name__)

__all__ = [
    "TrainingModels",
    "build_training_models",
    "models_from_marigold",
    "models_from_depthlab",
    "models_tiny",
    "reference_conv_in",
    "estimation_conv_in",
    "write_tiny_marigold_checkpoint",
    "FULL_UNET_CONFIG",
    "FULL_VAE_CONFIG",
    "FULL_CLIP_VISION_CONFIG",
    "TRAINABLE_CHOICES",
]

TRAINABLE_CHOICES = ("reference_unet", "estimation_unet", "image_projection")
MASKED_DEPTH_INITS = ("half_depth", "rgb", "zero")

# Full-size architectures (for the throughput benchmark; random weights, no download).
# SD 2 / Marigold U-Net (``prs-eth/marigold-depth-v1-0/unet/config.json``).
FULL_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": (5, 10, 20, 20),
    "block_out_channels": (320, 640, 1280, 1280),
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 8,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 96,
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "use_linear_projection": True,
}
# SD 2 VAE.
FULL_VAE_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}
# OpenCLIP ViT-H/14 vision tower (laion/CLIP-ViT-H-14-laion2B-s32B-b79K).
FULL_CLIP_VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1024,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}


@dataclass
class TrainingModels:
    """Everything training needs; the U-Nets are independent modules (no shared tensors).

    Attributes:
        vae: frozen ``AutoencoderKL``.
        reference_unet: 4-channel U-Net without output head.
        estimation_unet: 12-channel U-Net.
        image_encoder: frozen ``CLIPVisionModelWithProjection``.
        image_projection: :class:`ImageProjection`.
        scheduler_config: Marigold's scheduler config (DDIM at inference, DDPM for training noise).
        image_processor: the CLIP image processor the pipeline uses.
        marigold_unet_config: U-Net config with Marigold's 8 input channels (for the original-layout
            export).
        info: how the models were initialised (recorded with the run).
    """

    vae: AutoencoderKL
    reference_unet: UNet2DConditionModel
    estimation_unet: UNet2DConditionModel
    image_encoder: nn.Module
    image_projection: ImageProjection
    scheduler_config: dict[str, Any]
    image_processor: Any
    marigold_unet_config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    def modules(self) -> dict[str, nn.Module]:
        return {
            "vae": self.vae,
            "reference_unet": self.reference_unet,
            "estimation_unet": self.estimation_unet,
            "image_encoder": self.image_encoder,
            "image_projection": self.image_projection,
        }

    def set_trainable(self, trainable: Iterable[str]) -> list[str]:
        """Freeze everything, then unfreeze the named modules; returns the sorted names."""
        names = sorted(set(trainable))
        bad = [name for name in names if name not in TRAINABLE_CHOICES]
        if bad:
            raise ValueError(f"`model.trainable` entries must be in {TRAINABLE_CHOICES}; got {bad}")
        if not names:
            raise ValueError("`model.trainable` is empty: nothing to train")
        for name, module in self.modules().items():
            module.requires_grad_(name in names)
        self.vae.eval()
        self.image_encoder.eval()
        return names


# ------------------------------------------------------------------------------ conv_in surgery
def reference_conv_in(
    weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Marigold ``conv_in`` ``[C, 8, k, k]`` -> reference ``[C, 4, k, k]`` (RGB-latent filters)."""
    _check_marigold_conv(weight)
    return weight[:, 0:4].clone(), None if bias is None else bias.clone()


def estimation_conv_in(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    masked_depth_init: str = "half_depth",
    masked_depth_fraction: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Marigold ``conv_in`` ``[C, 8, k, k]`` -> estimation ``[C, 12, k, k]`` (module docstring)."""
    _check_marigold_conv(weight)
    if masked_depth_init not in MASKED_DEPTH_INITS:
        raise ValueError(
            f"`masked_depth_init` must be one of {MASKED_DEPTH_INITS}; got {masked_depth_init!r}"
        )
    if not 0.0 <= float(masked_depth_fraction) <= 1.0:
        raise ValueError(f"`masked_depth_fraction` must be in [0, 1]; got {masked_depth_fraction!r}")
    rgb_filters, depth_filters = weight[:, 0:4], weight[:, 4:8]
    mask_filters = torch.zeros_like(depth_filters)
    if masked_depth_init == "half_depth":
        fraction = float(masked_depth_fraction)
        noisy_filters, masked_filters = depth_filters * (1.0 - fraction), depth_filters * fraction
    elif masked_depth_init == "rgb":
        noisy_filters, masked_filters = depth_filters.clone(), rgb_filters.clone()
    else:
        noisy_filters, masked_filters = depth_filters.clone(), torch.zeros_like(depth_filters)
    new_weight = torch.cat([noisy_filters, mask_filters, masked_filters], dim=1).contiguous()
    return new_weight, None if bias is None else bias.clone()


def _check_marigold_conv(weight: torch.Tensor) -> None:
    if weight.ndim != 4 or weight.shape[1] != 8:
        raise CheckpointError(
            "Marigold `conv_in.weight` must be [C, 8, k, k] (rgb latent + depth latent); "
            f"got {tuple(weight.shape)}"
        )


# ------------------------------------------------------------------------------ builders
def _unet_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def unets_from_marigold_state(
    unet_config: Mapping[str, Any],
    marigold_state: Mapping[str, torch.Tensor],
    masked_depth_init: str = "half_depth",
    masked_depth_fraction: float = 0.5,
    dtype: torch.dtype = torch.float32,
    source: str = "Marigold U-Net",
) -> tuple[UNet2DConditionModel, UNet2DConditionModel]:
    """Reference (4 ch, no head) and estimation (12 ch) U-Nets from Marigold's U-Net tensors, strictly."""
    config = _unet_config(unet_config)
    if config.get("in_channels") != 8:
        raise CheckpointError(f"{source}: expected Marigold's in_channels=8; got {config.get('in_channels')}")
    if "conv_in.weight" not in marigold_state:
        raise CheckpointError(f"{source}: no `conv_in.weight` among {len(marigold_state)} tensors")
    weight, bias = marigold_state["conv_in.weight"], marigold_state.get("conv_in.bias")

    # Reference U-Net: RGB filters; head tensors dropped by name (the model has no head).
    ref_weight, ref_bias = reference_conv_in(weight, bias)
    ref_state = {k: v.clone() for k, v in marigold_state.items() if not k.startswith("conv_in.")}
    ref_state["conv_in.weight"] = ref_weight
    if ref_bias is not None:
        ref_state["conv_in.bias"] = ref_bias
    reference = remove_output_head(build_from_config(UNet2DConditionModel, {**config, "in_channels": 4}))
    load_strict(
        reference,
        ref_state,
        f"{source} -> reference U-Net",
        ignore_prefixes=REFERENCE_HEAD_PREFIXES,
        dtype=dtype,
    )

    # Estimation U-Net: [noisy depth, mask, masked depth] filters.
    est_weight, est_bias = estimation_conv_in(weight, bias, masked_depth_init, masked_depth_fraction)
    est_state = {k: v.clone() for k, v in marigold_state.items() if not k.startswith("conv_in.")}
    est_state["conv_in.weight"] = est_weight
    if est_bias is not None:
        est_state["conv_in.bias"] = est_bias
    estimation = build_from_config(UNet2DConditionModel, {**config, "in_channels": 12})
    load_strict(estimation, est_state, f"{source} -> estimation U-Net", dtype=dtype)
    return reference, estimation


def _resolve_marigold(source: str | Path) -> Path:
    """The Marigold folder (``vae/``, ``unet/``, ``scheduler/``).

    Given directly, under ``<root>/marigold-depth-v1-0``, or a hub id resolved through
    huggingface_hub (cache first).
    """
    path = Path(str(source)).expanduser()
    for candidate in (path, path / MARIGOLD_DIR):
        if (candidate / "unet" / "config.json").is_file() and (candidate / "vae" / "config.json").is_file():
            return candidate
    if path.exists():
        raise CheckpointNotFoundError(
            f"`model.marigold`={str(source)!r} has no Marigold checkpoint (unet/, vae/, scheduler/), "
            f"neither directly nor under {MARIGOLD_DIR}/"
        )
    return _hub_folder(str(source), ["model_index.json", "vae/*", "unet/*", "scheduler/*"])


def _resolve_clip(source: str | Path | None, marigold_folder: Path) -> Path:
    if source is None:
        sibling = marigold_folder.parent / CLIP_DIR
        if (sibling / "config.json").is_file():
            return sibling
        source = HUB_IDS["clip"]
    path = Path(str(source)).expanduser()
    if (path / "config.json").is_file():
        return path
    if (path / CLIP_DIR / "config.json").is_file():
        return path / CLIP_DIR
    if path.exists():
        raise CheckpointNotFoundError(f"`model.clip`={str(source)!r} has no config.json")
    return _hub_folder(str(source), ["config.json", "model.safetensors", "preprocessor_config.json"])


def _hub_folder(repo_id: str, patterns: list[str]) -> Path:
    folder = hub_snapshot(repo_id, patterns)
    if folder is None:
        raise CheckpointNotFoundError(
            f"{repo_id!r} is neither a local folder nor in the huggingface_hub cache, and could not "
            f"be downloaded; download it first, e.g. `hf download {repo_id} --local-dir <folder>`"
        )
    return folder


def models_from_marigold(
    marigold: str | Path,
    clip: str | Path | None = None,
    *,
    masked_depth_init: str = "half_depth",
    masked_depth_fraction: float = 0.5,
    projection_init: str = "default",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> TrainingModels:
    """Initialise DepthLab from a Marigold depth checkpoint (folder, original-layout root or hub id)."""
    folder = _resolve_marigold(marigold)
    unet_config = dict(UNet2DConditionModel.load_config(folder / "unet"))
    marigold_state = load_component_weights(folder / "unet")
    reference, estimation = unets_from_marigold_state(
        unet_config, marigold_state, masked_depth_init, masked_depth_fraction, dtype, f"{folder / 'unet'}"
    )
    del marigold_state
    vae = build_from_config(AutoencoderKL, AutoencoderKL.load_config(folder / "vae"))
    load_strict(vae, load_component_weights(folder / "vae"), f"VAE in {folder / 'vae'}", dtype=dtype)
    clip_folder = _resolve_clip(clip, folder)
    image_encoder = load_clip_vision(clip_folder, dtype)
    projection_dim = int(image_encoder.config.projection_dim)
    context_dim = int(unet_config["cross_attention_dim"])
    projection = _new_projection(projection_dim, context_dim, projection_init, seed).to(dtype)
    scheduler_config = dict(DDIMScheduler.load_config(folder / "scheduler"))
    return TrainingModels(
        vae=vae,
        reference_unet=reference,
        estimation_unet=estimation,
        image_encoder=image_encoder,
        image_projection=projection,
        scheduler_config=_clean_scheduler_config(scheduler_config),
        image_processor=clip_image_processor(),
        marigold_unet_config=_unet_config(unet_config),
        info={
            "init": "marigold",
            "marigold": str(folder),
            "clip": str(clip_folder),
            "masked_depth_init": masked_depth_init,
            "masked_depth_fraction": float(masked_depth_fraction),
            "projection_init": projection_init,
        },
    )


def _new_projection(in_features: int, out_features: int, init: str, seed: int) -> ImageProjection:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        projection = ImageProjection(in_features, out_features)
    if init == "identity":
        if in_features != out_features:
            raise ValueError(
                f"`projection_init`='identity' needs in == out features; got {in_features}, {out_features}"
            )
        with torch.no_grad():
            projection.mapping_layer.weight.copy_(torch.eye(in_features))
            projection.mapping_layer.bias.zero_()
    elif init != "default":
        raise ValueError(f"`projection_init` must be 'default' or 'identity'; got {init!r}")
    return projection


def _clean_scheduler_config(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def _from_components(components: Mapping[str, Any], info: dict[str, Any]) -> TrainingModels:
    """TrainingModels from pipeline components (``load_pipeline_components``, ``tiny_components``)."""
    marigold_config = {**_unet_config(components["estimation_unet"].config), "in_channels": 8}
    return TrainingModels(
        vae=components["vae"],
        reference_unet=components["reference_unet"],
        estimation_unet=components["estimation_unet"],
        image_encoder=components["image_encoder"],
        image_projection=components["image_projection"],
        scheduler_config=_clean_scheduler_config(components["scheduler"].config),
        image_processor=components.get("image_processor") or clip_image_processor(),
        marigold_unet_config=marigold_config,
        info=info,
    )


def models_from_depthlab(source: str | Path | None, dtype: torch.dtype = torch.float32) -> TrainingModels:
    """Fine-tune published (or previously exported) DepthLab weights: anything ``from_pretrained`` loads."""
    paths = resolve_checkpoints(source)
    components = load_pipeline_components(paths, False, dtype)
    return _from_components(components, {"init": "depthlab", "depthlab": str(source)})


def models_tiny(seed: int = 0) -> TrainingModels:
    """The tiny random-weight models of ``DepthLabPipeline.build_tiny(seed)`` (tests, smoke runs)."""
    return _from_components(tiny_components(seed), {"init": "tiny", "tiny_seed": int(seed)})


def build_training_models(model_config: Mapping[str, Any]) -> TrainingModels:
    """Dispatch on ``model_config["init"]`` (``marigold`` | ``depthlab`` | ``tiny``)."""
    init = model_config.get("init", "marigold")
    if init == "marigold":
        if not model_config.get("marigold"):
            raise ValueError("`model.marigold` (folder or hub id) is required with model.init=marigold")
        return models_from_marigold(
            model_config["marigold"],
            model_config.get("clip"),
            masked_depth_init=model_config.get("masked_depth_init", "half_depth"),
            masked_depth_fraction=float(model_config.get("masked_depth_fraction", 0.5)),
            projection_init=model_config.get("projection_init", "default"),
            seed=int(model_config.get("seed", 0)),
        )
    if init == "depthlab":
        return models_from_depthlab(model_config.get("depthlab"))
    if init == "tiny":
        return models_tiny(int(model_config.get("tiny_seed", 0)))
    raise ValueError(f"`model.init` must be 'marigold', 'depthlab' or 'tiny'; got {init!r}")


def write_tiny_marigold_checkpoint(root: str | Path, seed: int = 0) -> Path:
    """Write a tiny random Marigold-like checkpoint (8-channel U-Net) + tiny CLIP in the original layout.

    ``root/marigold-depth-v1-0/{unet,vae,scheduler}`` and ``root/CLIP-ViT-H-14-laion2B-s32B-b79K/``,
    for tests of :func:`models_from_marigold` without downloads. Returns ``root``.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    root = Path(root)
    marigold = root / MARIGOLD_DIR
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**{**TINY_UNET_CONFIG, "in_channels": 8})
        vae = AutoencoderKL(**TINY_VAE_CONFIG)
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP_VISION_CONFIG))
    unet.save_pretrained(marigold / "unet")
    vae.save_pretrained(marigold / "vae")
    DDIMScheduler(**MARIGOLD_SCHEDULER_CONFIG).save_pretrained(marigold / "scheduler")
    clip.save_pretrained(root / CLIP_DIR)
    (marigold / "model_index.json").write_text(json.dumps({"_class_name": "MarigoldPipeline"}) + "\n")
    return root
