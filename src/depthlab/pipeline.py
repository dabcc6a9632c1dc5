"""DepthLab: depth completion with a reference-guided latent diffusion model.

Example::

    import numpy as np
    from PIL import Image
    from depthlab import DepthLabPipeline

    pipe = DepthLabPipeline.from_pretrained("checkpoints")      # or None: huggingface_hub cache
    image = Image.open("rgb.png")
    depth = np.load("partial_depth.npy")                          # [H, W], 0 where unknown
    out = pipe(image, depth, generator=torch.Generator().manual_seed(0))
    out.depth                                                     # [H, W] float32, same units

The algorithm is that of the original release (``spec/inference.md``); differences are only in
what is not computed: no unconditional U-Net branch at guidance scale 1 (and no text encoder),
reference features computed once per image and reused by every step and ensemble member, their
key/value projections cached, fixed conditioning computed once.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, LCMScheduler, UNet2DConditionModel
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPVisionConfig, CLIPVisionModelWithProjection

from depthlab import inputs as input_checks
from depthlab import postprocessing, preprocessing
from depthlab.models.components import REFERENCE_HEAD_PREFIXES, ImageProjection, remove_output_head
from depthlab.models.loading import (
    CLIP_TEXT_PREFIXES,
    CheckpointError,
    CheckpointPaths,
    CheckpointSource,
    build_from_config,
    load_component_weights,
    load_state_dict_file,
    load_strict,
    resolve_checkpoints,
)
from depthlab.models import schedulers
from depthlab.models.reference_attention import ReferenceAttention
from depthlab.outputs import DepthLabOutput

logger = logging.getLogger(__name__)

__all__ = ["DepthLabPipeline", "resolve_dtype", "check_device_dtype", "clip_image_processor", "load_clip_vision"]

_DTYPE_ALIASES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
_FORMAT_VERSION = 1
_PRESERVE_MODES = ("none", "exact", "smooth")


def clip_image_processor() -> Any:
    """``CLIPImageProcessor()`` with its built-in defaults (the Pillow implementation)."""
    try:  # transformers >= 5: the Pillow backend has its own class
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil()
    except ImportError:
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor()


def resolve_dtype(torch_dtype: torch.dtype | str | None) -> torch.dtype:
    """``torch.float32``/``"fp16"``/``"bf16"``/... -> a floating ``torch.dtype`` (None -> float32)."""
    if torch_dtype is None:
        return torch.float32
    if isinstance(torch_dtype, str):
        key = torch_dtype.lower().removeprefix("torch.")
        if key not in _DTYPE_ALIASES:
            raise TypeError(
                f"`torch_dtype`={torch_dtype!r} is not a known dtype; use one of {sorted(_DTYPE_ALIASES)}"
            )
        return _DTYPE_ALIASES[key]
    if not isinstance(torch_dtype, torch.dtype) or torch_dtype not in _DTYPE_ALIASES.values():
        raise TypeError(
            f"`torch_dtype` must be torch.float32, torch.float16 or torch.bfloat16; got {torch_dtype!r}"
        )
    return torch_dtype


def check_device_dtype(device: torch.device, dtype: torch.dtype) -> None:
    """Raise ``ValueError`` when ``device`` cannot run the pipeline's operations in ``dtype``."""
    try:
        x = torch.randn(1, 8, 8, 8, device=device).to(dtype)
        x = torch.nn.functional.conv2d(x, torch.randn(8, 8, 3, 3, device=device).to(dtype), padding=1)
        x = torch.nn.functional.group_norm(x, 4)
        q = x.flatten(2).transpose(1, 2)[:, None]
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
        torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
    except (RuntimeError, TypeError, NotImplementedError) as error:
        raise ValueError(
            f"`torch_dtype`={dtype} is not supported on device {device!s} ({error}); "
            "use torch.float32 (or bfloat16 on CPU)"
        ) from None


@dataclass
class _Item:
    """One input image after pre-processing (numpy, processing resolution, padded to x8)."""

    index: int
    rgb: np.ndarray  # uint8 [H, W, 3], input size
    depth: np.ndarray  # float32 [H, W], input units
    known_mask: np.ndarray  # bool [H, W]
    resized: preprocessing.ResizedInputs
    normalized: np.ndarray  # float32 [H8, W8] in [-s, s]
    masked_filled: np.ndarray  # float32 [H8, W8]
    lo: np.float32
    hi: np.float32

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.normalized.shape[0] // 8, self.normalized.shape[1] // 8


class DepthLabPipeline(DiffusionPipeline):
    """Depth completion pipeline of DepthLab (Liu et al. 2024), composed from stock models.

    Components:
        vae: ``AutoencoderKL`` (Stable Diffusion 2 / Marigold).
        reference_unet: ``UNet2DConditionModel`` with 4 input channels (RGB latent).
        estimation_unet: ``UNet2DConditionModel`` with 12 input channels (noisy depth latent,
            mask latent, masked-depth latent).
        image_encoder: ``CLIPVisionModelWithProjection`` (CLIP ViT-H/14, 1024-d ``image_embeds``).
        image_projection: :class:`~depthlab.models.components.ImageProjection` (1024 -> 1024).
        scheduler: ``DDIMScheduler`` (v-prediction), or ``LCMScheduler`` for a few-step student
            (:mod:`depthlab.training.distill`; see :mod:`depthlab.models.schedulers`).
        image_processor: CLIP image processor (shortest side 224, centre crop, CLIP mean/std).
        text_encoder, tokenizer: optional; only used for ``guidance_scale > 1``.
    """

    model_cpu_offload_seq = "image_encoder->image_projection->vae->reference_unet->estimation_unet->vae"
    _optional_components = ["text_encoder", "tokenizer", "image_processor"]

    def __init__(
        self,
        vae: AutoencoderKL,
        reference_unet: UNet2DConditionModel,
        estimation_unet: UNet2DConditionModel,
        image_encoder: CLIPVisionModelWithProjection,
        image_projection: ImageProjection,
        scheduler: DDIMScheduler | LCMScheduler,
        image_processor: Any = None,
        text_encoder: Any = None,
        tokenizer: Any = None,
        reference_fp16_rounding: bool = True,
    ) -> None:
        super().__init__()
        if image_processor is None:
            image_processor = clip_image_processor()
        for name, model, channels in (
            ("reference_unet", reference_unet, 4),
            ("estimation_unet", estimation_unet, 12),
        ):
            if model.config.in_channels != channels:
                raise ValueError(
                    f"`{name}` must have {channels} input channels; got {model.config.in_channels}"
                )
        self.register_modules(
            vae=vae,
            reference_unet=reference_unet,
            estimation_unet=estimation_unet,
            image_encoder=image_encoder,
            image_projection=image_projection,
            scheduler=scheduler,
            image_processor=image_processor,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
        )
        self.reference_attention = ReferenceAttention(
            reference_unet, estimation_unet, fp16_rounding=reference_fp16_rounding
        )
        self._checkpoint_paths: CheckpointPaths | None = None
        self._unconditional_context: torch.Tensor | None = None

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(
        cls,
        source: CheckpointSource = None,
        *,
        torch_dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        load_text_encoder: bool = False,
        reference_fp16_rounding: bool = True,
    ) -> DepthLabPipeline:
        """Load the published weights (original layout or hub ids) or a ``save_pretrained`` folder.

        Args:
            source: a folder in the original layout (``marigold-depth-v1-0/``,
                ``CLIP-ViT-H-14-laion2B-s32B-b79K/``, ``DepthLab/*.pth``), a folder written by
                :meth:`save_pretrained`, or hub ids: None (``$DEPTHLAB_CHECKPOINTS`` when set,
                else the published ids), ``"owner/name"`` of a DepthLab repository, a sequence
                ``(marigold_id, clip_id, depthlab_id)`` or a dict with those keys; resolved
                through the huggingface_hub cache, downloaded when online.
            torch_dtype: float32 (default), float16 or bfloat16 (or their names).
            device: where to put the models (default CPU).
            load_text_encoder: also load the text encoder/tokenizer (only needed for
                ``guidance_scale > 1``; loaded on demand otherwise).
            reference_fp16_rounding: round reference features to float16 as the original does.

        Raises:
            CheckpointNotFoundError: weights missing (the message lists them and how to get them).
            CheckpointError: a tensor is missing, unexpected or mis-shaped.
        """
        dtype = resolve_dtype(torch_dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        check_device_dtype(device, dtype)
        paths = resolve_checkpoints(source, with_text_encoder=load_text_encoder)
        if paths.layout == "original":
            components = _load_original_layout(paths, load_text_encoder, dtype)
        else:
            components = _load_depthlab_layout(paths.root, load_text_encoder, dtype)
        unconditional = components.pop("unconditional_context", None)
        pipe = cls(**components, reference_fp16_rounding=reference_fp16_rounding)
        pipe._checkpoint_paths = paths
        pipe._unconditional_context = unconditional
        return pipe.to(device)

    @classmethod
    def build_tiny(cls, seed: int = 0, reference_fp16_rounding: bool = True) -> DepthLabPipeline:
        """A tiny random-weight pipeline with the real architecture families (tests, smoke runs).

        Same configuration as the golden test checkpoints: VAE channels (16, 32, 32, 32), U-Net
        channels (8, 16, 32, 32) with 1024-d cross-attention, a 2-layer CLIP vision tower.
        """
        with torch.random.fork_rng(devices=[]):  # module initialisation draws from the global RNG
            torch.manual_seed(seed)
            vae = AutoencoderKL(**TINY_VAE_CONFIG)
            unets = [UNet2DConditionModel(**{**TINY_UNET_CONFIG, "in_channels": c}) for c in (4, 12)]
            remove_output_head(unets[0])
            image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP_VISION_CONFIG))
            projection = ImageProjection(1024, 1024)
        scheduler = DDIMScheduler(**MARIGOLD_SCHEDULER_CONFIG)
        return cls(
            vae,
            unets[0],
            unets[1],
            image_encoder,
            projection,
            scheduler,
            reference_fp16_rounding=reference_fp16_rounding,
        )

    def save_pretrained(
        self, save_directory: str | Path, dtype: torch.dtype | str | None = None, overwrite: bool = False
    ) -> Path:
        """Write all components as safetensors + configs (loads fast with :meth:`from_pretrained`).

        Args:
            save_directory: target folder (created; must be empty unless ``overwrite``).
            dtype: store the weights in this dtype (e.g. ``torch.float16`` halves the size);
                default: as they are.
            overwrite: allow writing into a non-empty folder.
        """
        from safetensors.torch import save_file

        target = Path(save_directory)
        if target.exists() and any(target.iterdir()) and not overwrite:
            raise FileExistsError(f"`save_directory` {str(target)!r} is not empty (pass overwrite=True)")
        store_dtype = resolve_dtype(dtype) if dtype is not None else None
        target.mkdir(parents=True, exist_ok=True)
        index: dict[str, Any] = {
            "_class_name": "DepthLabPipeline",
            "_depthlab_format": _FORMAT_VERSION,
            "reference_fp16_rounding": self.reference_attention.fp16_rounding,
            "components": {},
        }
        models = {
            "vae": self.vae,
            "reference_unet": self.reference_unet,
            "estimation_unet": self.estimation_unet,
            "image_encoder": self.image_encoder,
            "image_projection": self.image_projection,
        }
        if self.text_encoder is not None:
            models["text_encoder"] = self.text_encoder
        for name, model in models.items():
            folder = target / name
            folder.mkdir(exist_ok=True)
            if hasattr(model, "save_config"):
                model.save_config(folder)
            else:
                model.config.to_json_file(str(folder / "config.json"))
            state = {
                k: (v.to(store_dtype) if store_dtype is not None and v.is_floating_point() else v)
                .detach()
                .cpu()
                .contiguous()
                for k, v in model.state_dict().items()
            }
            save_file(state, str(folder / "model.safetensors"))
            index["components"][name] = type(model).__name__
        self.scheduler.save_pretrained(target / "scheduler")
        self.image_processor.save_pretrained(target / "image_processor")
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(target / "tokenizer")
        if self._unconditional_context is not None:
            save_file(
                {"context": self._unconditional_context.detach().cpu().float().contiguous()},
                str(target / "unconditional_context.safetensors"),
            )
        (target / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        return target

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_image_condition(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """CLIP image embedding of the original-size images -> projected context ``[B, 1, 1024]``."""
        pixel_values = self.image_processor(images=list(images), return_tensors="pt").pixel_values
        encoder = self.image_encoder
        pixel_values = pixel_values.to(device=encoder.device, dtype=encoder.dtype)
        image_embeds = encoder(pixel_values).image_embeds  # [B, 1024]
        return self.image_projection(image_embeds)  # [B, 1, 1024]

    @torch.no_grad()
    def encode_to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [-1, 1] -> latent ``[B, 4, H/8, W/8]`` (posterior mean x scaling)."""
        moments = self.vae.quant_conv(self.vae.encoder(x.to(self.vae.dtype)))
        mean = moments[:, : moments.shape[1] // 2]
        return mean * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, 4, h, w]`` -> channel mean of the decoded image ``[B, 1, 8h, 8w]`` (float32)."""
        decoded = self.vae.decode(latent / self.vae.config.scaling_factor).sample
        return decoded.float().mean(dim=1, keepdim=True)

    def unconditional_context(self) -> torch.Tensor:
        """First token of the empty-prompt text embedding ``[1, 1, C]`` (for ``guidance_scale > 1``).

        Loads the text encoder on demand from the checkpoint when it was not loaded.
        """
        if self._unconditional_context is None:
            if self.text_encoder is None or self.tokenizer is None:
                self._load_text_encoder()
            ids = self.tokenizer("", padding="do_not_pad", return_tensors="pt").input_ids
            with torch.no_grad():
                hidden = self.text_encoder(ids.to(self.text_encoder.device))[0]
            self._unconditional_context = hidden[:, :1].float()
        return self._unconditional_context

    def _load_text_encoder(self) -> None:
        paths = self._checkpoint_paths
        folder = (
            paths.marigold
            if paths is not None and paths.layout == "original"
            else (paths.root if paths is not None else None)
        )
        if folder is None or not (folder / "text_encoder").is_dir() or not (folder / "tokenizer").is_dir():
            raise ValueError(
                "`guidance_scale` > 1 needs the text encoder and tokenizer of marigold-depth-v1-0, "
                "which this pipeline does not have; load with `load_text_encoder=True` from a "
                "checkpoint that contains them"
            )
        text_encoder, tokenizer = _load_text_encoder(folder)
        self.register_modules(text_encoder=text_encoder.to(self.device, self.dtype), tokenizer=tokenizer)

    # ------------------------------------------------------------------ inference
    def check_inputs(
        self,
        num_inference_steps: int,
        processing_resolution: int,
        strength: float,
        normalize_scale: float,
        guidance_scale: float,
        ensemble_size: int,
        batch_size: int,
        output_type: str,
        preserve_known: str,
        timestep_spacing: str | None,
    ) -> None:
        """Validate the scalar arguments; raise ``ValueError``/``TypeError`` naming the argument."""
        for name, value, low in (
            ("num_inference_steps", num_inference_steps, 1),
            ("ensemble_size", ensemble_size, 1),
            ("batch_size", batch_size, 1),
            ("processing_resolution", processing_resolution, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"`{name}` must be an integer; got {value!r}")
            if value < low:
                raise ValueError(f"`{name}` must be >= {low}; got {value}")
        for name, value in (
            ("strength", strength),
            ("normalize_scale", normalize_scale),
            ("guidance_scale", guidance_scale),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise TypeError(f"`{name}` must be a number; got {value!r}")
            if not np.isfinite(value):
                raise ValueError(f"`{name}` must be finite; got {value}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"`strength` must be in (0, 1]; got {strength}")
        schedulers.check_steps(self.scheduler, num_inference_steps, strength)
        if normalize_scale <= 0:
            raise ValueError(f"`normalize_scale` must be > 0; got {normalize_scale}")
        if guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be >= 1; got {guidance_scale}")
        if output_type not in ("np", "pt"):
            raise ValueError(f"`output_type` must be 'np' or 'pt'; got {output_type!r}")
        if preserve_known not in _PRESERVE_MODES:
            raise ValueError(f"`preserve_known` must be one of {_PRESERVE_MODES}; got {preserve_known!r}")
        if timestep_spacing is not None and schedulers.is_consistency_scheduler(self.scheduler):
            raise ValueError(
                f"`timestep_spacing`={timestep_spacing!r} applies to DDIM; this checkpoint samples with "
                "its consistency (LCM) scheduler: leave it None"
            )
        if timestep_spacing not in (None, "leading", "trailing", "linspace"):
            raise ValueError(
                f"`timestep_spacing` must be None, 'leading', 'trailing' or 'linspace'; got {timestep_spacing!r}"
            )

    def _prepare_items(
        self,
        image: Any,
        depth: Any,
        known_mask: Any,
        processing_resolution: int,
        normalize_scale: float,
        refine: bool,
        resize_mode: str,
        fill_mode: str,
        timings: dict[str, float],
    ) -> tuple[list[_Item], bool]:
        """Standardise, check and pre-process every input (numpy). Returns (items, was_batched)."""
        batched = isinstance(image, (list, tuple))
        images = list(image) if batched else [image]
        if batched:
            if not isinstance(depth, (list, tuple)) or len(depth) != len(images):
                raise ValueError(
                    f"`depth` must be a list of the same length as `image` ({len(images)}); got "
                    f"{type(depth).__name__}{'' if not isinstance(depth, (list, tuple)) else f' of length {len(depth)}'}"
                )
            if known_mask is not None and (
                not isinstance(known_mask, (list, tuple)) or len(known_mask) != len(images)
            ):
                raise ValueError(f"`known_mask` must be None or a list of length {len(images)}")
        if not images:
            raise ValueError("`image` is an empty list")
        depths = list(depth) if batched else [depth]
        masks = (
            list(known_mask)
            if batched and known_mask is not None
            else ([known_mask] if not batched else [None] * len(images))
        )
        if fill_mode not in ("exact", "fast"):
            raise ValueError(f"`fill_mode` must be 'exact' or 'fast'; got {fill_mode!r}")
        items = []
        for index, (img, dep, msk) in enumerate(zip(images, depths, masks, strict=True)):
            rgb = input_checks.to_rgb_uint8(img, name="image")
            depth_array = input_checks.to_depth_array(dep, name="depth")
            mask = input_checks.resolve_known_mask(msk, depth_array, name="known_mask")
            input_checks.check_completion_inputs(rgb, depth_array, mask, index=index if batched else None)
            start = time.perf_counter()
            prefilled = (
                depth_array
                if refine
                else preprocessing.nearest_fill(
                    np.where(mask, depth_array, 0).astype(np.float32), mask, exact=fill_mode == "exact"
                )
            )
            if refine and not np.all(np.isfinite(depth_array)):
                raise ValueError("`depth` must be finite everywhere with refine=True (it is a full map)")
            timings["prefill"] += time.perf_counter() - start
            resized = preprocessing.resize_inputs(rgb, prefilled, mask, processing_resolution, resize_mode)
            if not resized.known_mask.any():
                raise ValueError(f"no known pixel is left at processing resolution {resized.size}")
            normalized, lo, hi = preprocessing.normalize_depth(
                resized.depth, resized.known_mask, normalize_scale
            )
            start = time.perf_counter()
            masked = np.where(resized.known_mask, normalized, 0).astype(np.float32)
            filled = preprocessing.linear_fill(masked, resized.known_mask, 0.0, exact=fill_mode == "exact")
            timings["linear_fill"] += time.perf_counter() - start
            items.append(_Item(index, rgb, depth_array, mask, resized, normalized, filled, lo, hi))
        return items, batched

    def _as_rows(
        self, value: Any, name: str, items: list[_Item], ensemble_size: int
    ) -> list[torch.Tensor] | None:
        """Split user-given noise/latents into one ``[1, 4, h, w]`` tensor per (item, member) row."""
        if value is None:
            return None
        n_rows = len(items) * ensemble_size
        if isinstance(value, (list, tuple)):
            if len(value) != len(items):
                raise ValueError(
                    f"`{name}` as a list must have one entry per image ({len(items)}); got {len(value)}"
                )
            parts = [self._to_tensor(v, name) for v in value]
            rows = []
            for part, item in zip(parts, items, strict=True):
                part = part.reshape(-1, *part.shape[-3:]) if part.ndim >= 3 else part
                if part.shape[0] != ensemble_size:
                    raise ValueError(
                        f"`{name}` for image {item.index} must have {ensemble_size} rows; got {tuple(part.shape)}"
                    )
                rows.extend(part[i : i + 1] for i in range(ensemble_size))
        else:
            tensor = self._to_tensor(value, name)
            if tensor.ndim == 3:
                tensor = tensor[None]
            if tensor.ndim != 4 or tensor.shape[0] != n_rows:
                raise ValueError(
                    f"`{name}` must have shape [{n_rows}, 4, h, w] (images x ensemble_size rows); got {tuple(tensor.shape)}"
                )
            rows = [tensor[i : i + 1] for i in range(n_rows)]
        for row_index, row in enumerate(rows):
            item = items[row_index // ensemble_size]
            expected = (1, self.vae.config.latent_channels, *item.latent_hw)
            if tuple(row.shape) != expected:
                raise ValueError(
                    f"`{name}` row {row_index} has shape {tuple(row.shape)}; image {item.index} needs "
                    f"{expected} (processing size {item.resized.size} padded to multiples of 8, / 8)"
                )
        return rows

    @staticmethod
    def _to_tensor(value: Any, name: str) -> torch.Tensor:
        if isinstance(value, np.ndarray):
            return torch.from_numpy(value)
        if isinstance(value, torch.Tensor):
            return value
        raise TypeError(f"`{name}` must be a torch tensor or numpy array; got {type(value).__name__}")

    @torch.no_grad()
    def __call__(
        self,
        image: Any,
        depth: Any,
        known_mask: Any = None,
        *,
        num_inference_steps: int = 50,
        processing_resolution: int = 768,
        strength: float = 0.8,
        blend: bool = True,
        normalize_scale: float = 1.0,
        refine: bool = False,
        guidance_scale: float = 1.0,
        ensemble_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        noise: Any = None,
        latents: Any = None,
        batch_size: int = 1,
        output_type: str = "np",
        output_latent: bool = False,
        show_progress_bar: bool = True,
        preserve_known: str = "none",
        resize_mode: str = "auto",
        fill_mode: str = "exact",
        timestep_spacing: str | None = None,
    ) -> DepthLabOutput:
        """Complete partial depth.

        Args:
            image: RGB image (PIL, numpy ``[H, W, 3]`` uint8 or float in [0, 1], torch ``[3, H, W]``;
                any PIL mode without alpha), or a list of them for a batch.
            depth: ``[H, W]`` depth in any unit (numpy/torch), or a list. Values at unknown pixels
                are ignored (except with ``refine=True``, where the whole map is the initial guess).
            known_mask: ``[H, W]`` bool, True = known (or a list). Default: finite and > 0.
            num_inference_steps: DDIM steps of the full schedule (>= 1).
            processing_resolution: longest side at which the model runs; 0 = input size.
                Sizes that are not multiples of 8 are padded and cropped back.
            strength: fraction of the schedule that is run, in (0, 1]; < 1 starts from the noised
                pre-filled depth, 1 from pure noise.
            blend: after every step but the last, put the noised known depth latent back where the
                latent-resolution mask is known.
            normalize_scale: known depth range is mapped to ``[-s, s]``.
            refine: ``depth`` is a full (rough) map: skip the nearest pre-fill.
            guidance_scale: classifier-free guidance; 1 (default) runs only the conditional branch.
            ensemble_size: members per image; the output is their mean, ``uncertainty`` their
                standard deviation (depth units).
            generator: ``torch.Generator`` (or one per image) for the noise draws.
            noise: explicit Gaussian noise ``[N * E, 4, h, w]`` (or a list per image of
                ``[E, 4, h, w]``) for the ``strength < 1`` start and for blending.
            latents: initial latent for ``strength == 1``, same layout as ``noise``.
            batch_size: rows (image x ensemble member) per U-Net call.
            output_type: ``"np"`` or ``"pt"``.
            output_latent: also return the final latents.
            show_progress_bar: tqdm bar over the denoising steps.
            preserve_known: ``"none"`` (original), ``"exact"`` (paste known depth back) or
                ``"smooth"`` (harmonic correction: known pixels exact, no seam).
            resize_mode: ``"auto"`` (default), ``"nearest"`` (original) or ``"preserve"``: how the
                known mask is resized when the processing size is below the input size; see
                :func:`depthlab.preprocessing.resize_inputs`.
            fill_mode: ``"exact"`` (original nearest pre-fill and Delaunay linear fill) or
                ``"fast"`` (distance transform and a local triangulation; much faster on dense
                masks at high resolution, not bit-identical).
            timestep_spacing: None (the scheduler's, "leading" for Marigold) or "trailing" (better
                for few-step runs), "linspace".

        Returns:
            :class:`~depthlab.outputs.DepthLabOutput`.
        """
        # 1. Check arguments and inputs.
        self.check_inputs(
            num_inference_steps,
            processing_resolution,
            strength,
            normalize_scale,
            guidance_scale,
            ensemble_size,
            batch_size,
            output_type,
            preserve_known,
            timestep_spacing,
        )
        if latents is not None and strength < 1:
            raise ValueError(
                "`latents` is the initial latent for strength == 1; with strength < 1 "
                "the start is the noised depth latent (pass `noise` instead)"
            )
        timings: dict[str, float] = defaultdict(float)
        items, batched = self._prepare_items(
            image,
            depth,
            known_mask,
            processing_resolution,
            normalize_scale,
            refine,
            resize_mode,
            fill_mode,
            timings,
        )
        noise_rows = self._as_rows(noise, "noise", items, ensemble_size)
        latent_rows = self._as_rows(latents, "latents", items, ensemble_size)
        generators = self._per_item_generators(generator, len(items))
        device, dtype = self._execution_device, self.estimation_unet.dtype

        # 2. Fixed conditioning: CLIP context per image [N, 1, 1024], optional unconditional one.
        start = time.perf_counter()
        context = self.encode_image_condition([item.rgb for item in items]).to(dtype)
        uncond = self.unconditional_context().to(device, dtype) if guidance_scale > 1 else None
        timings["conditioning"] += time.perf_counter() - start

        # 3. Timesteps: DDIM: the last int(N * strength) of the schedule; a consistency student
        #    (LCM): N steps inside the first `strength` of the schedule (models/schedulers.py).
        scheduler = self.scheduler
        if timestep_spacing is not None:
            scheduler = DDIMScheduler.from_config(scheduler.config, timestep_spacing=timestep_spacing)
        timesteps = schedulers.inference_timesteps(scheduler, num_inference_steps, strength, device)

        # 4. Noise per row (image-major, member-minor); drawn in that order when not given.
        rows = [(item, member) for item in items for member in range(ensemble_size)]
        row_noise, row_init = [], []
        for row_index, (item, _) in enumerate(rows):
            shape = (1, self.vae.config.latent_channels, *item.latent_hw)
            gen = generators[item.index]
            eps = (
                noise_rows[row_index]
                if noise_rows is not None
                else randn_tensor(shape, generator=gen, device=torch.device("cpu"), dtype=torch.float32)
            )
            row_noise.append(eps.to(device, dtype))
            if strength >= 1:
                init = (
                    latent_rows[row_index]
                    if latent_rows is not None
                    else randn_tensor(shape, generator=gen, device=torch.device("cpu"), dtype=torch.float32)
                )
                row_init.append(init.to(device, dtype))

        # 5. Encode every image once: latents [1, 4, h, w] and reference features per image.
        encoded: dict[int, dict[str, torch.Tensor]] = {}
        features: dict[int, dict[str, torch.Tensor]] = {}
        start = time.perf_counter()
        for item in items:
            encoded[item.index] = self._encode_item(item, need_depth_latent=strength < 1 or blend)
            with self.reference_attention.capture():
                self.reference_unet(
                    encoded[item.index]["rgb"],
                    torch.zeros((), dtype=torch.long, device=device),
                    encoder_hidden_states=context[item.index : item.index + 1],
                )
            features[item.index] = self.reference_attention.features
        self.reference_attention.clear()
        timings["encode"] += time.perf_counter() - start

        # 6. Denoise rows in chunks of `batch_size` rows of equal latent size.
        final_latents: list[torch.Tensor | None] = [None] * len(rows)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for row_index, (item, _) in enumerate(rows):
            groups[item.latent_hw].append(row_index)
        chunks = [
            indices[i : i + batch_size]
            for indices in groups.values()
            for i in range(0, len(indices), batch_size)
        ]
        progress = tqdm(
            total=len(chunks) * len(timesteps),
            desc="DepthLab denoising",
            disable=not show_progress_bar,
            leave=False,
        )
        start = time.perf_counter()
        for chunk in chunks:
            chunk_items = [rows[i][0] for i in chunk]
            # Resets a stateful (LCM) scheduler's step counter; its re-noising between steps draws
            # from the generator of the chunk's first image.
            schedulers.inference_timesteps(scheduler, num_inference_steps, strength, device)
            step_generator = generators[chunk_items[0].index]
            self._set_chunk_features(chunk_items, features)
            enc = {
                key: torch.cat([encoded[it.index][key] for it in chunk_items])
                for key in encoded[chunk_items[0].index]
            }
            eps = torch.cat([row_noise[i] for i in chunk])
            ctx = torch.cat([context[it.index : it.index + 1] for it in chunk_items])
            if strength < 1:
                latent = scheduler.add_noise(enc["depth"], eps, timesteps[:1])
            else:
                latent = torch.cat([row_init[i] for i in chunk])
            unknown = enc["unknown_down"]  # [B, 1, h, w], 1 = unknown
            for step, t in enumerate(timesteps):
                unet_input = torch.cat([latent, enc["mask"], enc["masked_depth"]], dim=1)  # [B, 12, h, w]
                v_pred = self.estimation_unet(unet_input, t, encoder_hidden_states=ctx).sample
                if uncond is not None:
                    with self.reference_attention.disabled():
                        v_uncond = self.estimation_unet(
                            unet_input, t, encoder_hidden_states=uncond.expand(len(chunk), -1, -1)
                        ).sample
                    v_pred = v_uncond + guidance_scale * (v_pred - v_uncond)
                latent = scheduler.step(v_pred, t, latent, generator=step_generator).prev_sample
                if blend and step < len(timesteps) - 1:
                    known_latent = scheduler.add_noise(enc["depth"], eps, timesteps[step + 1 : step + 2])
                    latent = (1 - unknown) * known_latent + unknown * latent
                progress.update(1)
            for position, row_index in enumerate(chunk):
                final_latents[row_index] = latent[position : position + 1]
        progress.close()
        self.reference_attention.clear()
        timings["denoise"] += time.perf_counter() - start

        # 7. Decode, back to depth units and input size, aggregate the ensemble.
        start = time.perf_counter()
        member_depths: dict[int, list[np.ndarray]] = defaultdict(list)
        for row_index, (item, _) in enumerate(rows):
            decoded = self.decode_from_latent(final_latents[row_index])[0, 0]  # [H8, W8]
            height, width = item.resized.size
            prediction = decoded[:height, :width].cpu().numpy()
            denorm = postprocessing.denormalize_depth(prediction, item.lo, item.hi, normalize_scale)
            member_depths[item.index].append(postprocessing.resize_to_input(denorm, item.depth.shape))
        timings["decode"] += time.perf_counter() - start

        depths, uncertainties, masks = [], [], []
        for item in items:
            stack = np.stack(member_depths[item.index])  # [E, H, W] float64
            mean = stack.mean(axis=0)
            mean = postprocessing.preserve_known_depth(mean, item.depth, item.known_mask, preserve_known)
            depths.append(mean.astype(np.float32))
            uncertainties.append(stack.std(axis=0).astype(np.float32) if ensemble_size > 1 else None)
            masks.append(item.known_mask)

        info = {
            "processing_size": [list(item.resized.size) for item in items],
            "resize_mode": [item.resized.resize_mode for item in items],
            "known_range": [(float(item.lo), float(item.hi)) for item in items],
            "timesteps": [int(t) for t in timesteps],
            "seconds": dict(timings),
        }
        latent_out = None
        if output_latent:
            shapes = {tuple(x.shape) for x in final_latents}
            latent_out = torch.cat(final_latents) if len(shapes) == 1 else list(final_latents)
        return DepthLabOutput(
            depth=_pack(depths, batched, output_type),
            known_mask=_pack(masks, batched, output_type),
            uncertainty=_pack(uncertainties, batched, output_type) if ensemble_size > 1 else None,
            latent=latent_out,
            method="depthlab",
            info=info,
        )

    def _per_item_generators(
        self, generator: torch.Generator | list[torch.Generator] | None, n_items: int
    ) -> list[torch.Generator | None]:
        if generator is None or isinstance(generator, torch.Generator):
            return [generator] * n_items
        if isinstance(generator, (list, tuple)):
            if len(generator) != n_items or not all(isinstance(g, torch.Generator) for g in generator):
                raise ValueError(f"`generator` as a list must hold {n_items} torch.Generator objects")
            return list(generator)
        raise TypeError(
            f"`generator` must be a torch.Generator or a list of them; got {type(generator).__name__}"
        )

    def _encode_item(self, item: _Item, need_depth_latent: bool) -> dict[str, torch.Tensor]:
        """VAE latents of one item (each ``[1, 4, h, w]``) and its latent-size unknown mask."""
        device, dtype = self._execution_device, self.vae.dtype

        def three_channels(array: np.ndarray) -> torch.Tensor:  # [H8, W8] -> [1, 3, H8, W8]
            return (
                torch.from_numpy(np.ascontiguousarray(array)).to(device, dtype)[None, None].repeat(1, 3, 1, 1)
            )

        rgb = torch.from_numpy((item.resized.rgb.astype(np.float64) / 255.0 * 2.0 - 1.0).astype(np.float32))
        rgb = rgb.permute(2, 0, 1)[None].to(device, dtype)  # [1, 3, H8, W8]
        unknown = (~item.resized.known_mask).astype(np.float32)  # 1 = unknown, the model's input
        out = {
            "rgb": self.encode_to_latent(rgb),
            "mask": self.encode_to_latent(three_channels(unknown * 2.0 - 1.0)),
            "masked_depth": self.encode_to_latent(three_channels(item.masked_filled)),
        }
        out["depth"] = (
            self.encode_to_latent(three_channels(item.normalized)) if need_depth_latent else out["rgb"]
        )
        h, w = item.latent_hw
        out["unknown_down"] = torch.nn.functional.interpolate(
            torch.from_numpy(unknown)[None, None], size=(h, w), mode="nearest"
        ).to(device, dtype)
        return out

    def _set_chunk_features(
        self, chunk_items: list[_Item], features: dict[int, dict[str, torch.Tensor]]
    ) -> None:
        """Reference features for a chunk: one row if all rows come from one image, else one per row."""
        indices = [item.index for item in chunk_items]
        if len(set(indices)) == 1:
            self.reference_attention.set_features(features[indices[0]])
        else:
            self.reference_attention.set_features(
                {
                    name: torch.cat([features[i][name] for i in indices])
                    for name in self.reference_attention.names
                }
            )


def _pack(values: list[Any], batched: bool, output_type: str) -> Any:
    """Single input -> one array; batch -> stacked [N, ...] when sizes agree, else a list."""
    if output_type == "pt":
        values = [torch.from_numpy(np.ascontiguousarray(v)) if v is not None else None for v in values]
    if not batched:
        return values[0]
    if len({tuple(v.shape) for v in values}) == 1:
        return torch.stack(values) if output_type == "pt" else np.stack(values)
    return values


# ---------------------------------------------------------------------- checkpoint loaders
def _load_unet(
    config: dict, in_channels: int, state_dict: dict, source: str, dtype: torch.dtype
) -> UNet2DConditionModel:
    """Estimation (12 channels) or reference (4 channels, output head removed) U-Net, strictly."""
    model = build_from_config(UNet2DConditionModel, {**config, "in_channels": in_channels})
    if in_channels == 4:
        remove_output_head(model)
        return load_strict(model, state_dict, source, ignore_prefixes=REFERENCE_HEAD_PREFIXES, dtype=dtype)
    return load_strict(model, state_dict, source, dtype=dtype)


def load_clip_vision(
    folder: Path, dtype: torch.dtype, state_dict: dict | None = None
) -> CLIPVisionModelWithProjection:
    raw = json.loads((folder / "config.json").read_text())
    if raw.get("model_type") == "clip" or "vision_config" in raw:
        full = CLIPConfig.from_pretrained(folder)
        config = full.vision_config
        config.projection_dim = full.projection_dim
    else:
        config = CLIPVisionConfig.from_pretrained(folder)
    config._attn_implementation = "sdpa"
    model = build_from_config(CLIPVisionModelWithProjection, config)
    if state_dict is None:
        state_dict = load_component_weights(folder)
    return load_strict(
        model,
        state_dict,
        f"CLIP image encoder in {str(folder)!r}",
        ignore_prefixes=CLIP_TEXT_PREFIXES,
        dtype=dtype,
    )


def _load_text_encoder(folder: Path, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    config = CLIPTextConfig.from_pretrained(folder / "text_encoder")
    model = build_from_config(CLIPTextModel, config)
    state = load_component_weights(folder / "text_encoder")
    if not any(key.startswith("text_model.") for key in model.state_dict()):
        # transformers >= 5 keeps the text transformer at the top level of CLIPTextModel.
        state = {key.removeprefix("text_model."): value for key, value in state.items()}
    load_strict(
        model,
        state,
        f"text encoder in {str(folder)!r}",
        dtype=dtype,
    )
    return model, CLIPTokenizer.from_pretrained(folder / "tokenizer")


def _load_original_layout(
    paths: CheckpointPaths, load_text_encoder: bool, dtype: torch.dtype
) -> dict[str, Any]:
    """Components from the original release's folders (strict; DepthLab .pth with weights_only)."""
    marigold, depthlab = paths.marigold, paths.depthlab
    vae = build_from_config(AutoencoderKL, AutoencoderKL.load_config(marigold / "vae"))
    load_strict(
        vae, load_component_weights(marigold / "vae"), f"VAE in {str(marigold / 'vae')!r}", dtype=dtype
    )
    unet_config = dict(UNet2DConditionModel.load_config(marigold / "unet"))
    reference_unet = _load_unet(
        unet_config,
        4,
        load_state_dict_file(depthlab / "reference_unet.pth"),
        str(depthlab / "reference_unet.pth"),
        dtype,
    )
    estimation_unet = _load_unet(
        unet_config,
        12,
        load_state_dict_file(depthlab / "denoising_unet.pth"),
        str(depthlab / "denoising_unet.pth"),
        dtype,
    )
    mapping_state = load_state_dict_file(depthlab / "mapping_layer.pth")
    weight = mapping_state.get("mapping_layer.weight")
    if weight is None or weight.ndim != 2:
        raise CheckpointError(
            f"{str(depthlab / 'mapping_layer.pth')!r} has no 2-D `mapping_layer.weight`; "
            f"keys: {sorted(mapping_state)[:8]}"
        )
    projection = build_from_config(
        ImageProjection, {"in_features": weight.shape[1], "out_features": weight.shape[0]}
    )
    load_strict(projection, mapping_state, str(depthlab / "mapping_layer.pth"), dtype=dtype)
    components: dict[str, Any] = {
        "vae": vae,
        "reference_unet": reference_unet,
        "estimation_unet": estimation_unet,
        "image_encoder": load_clip_vision(paths.clip, dtype),
        "image_projection": projection,
        "scheduler": DDIMScheduler.from_pretrained(marigold / "scheduler"),
        "image_processor": clip_image_processor(),
    }
    if load_text_encoder:
        components["text_encoder"], components["tokenizer"] = _load_text_encoder(marigold, dtype)
    return components


def _load_depthlab_layout(root: Path, load_text_encoder: bool, dtype: torch.dtype) -> dict[str, Any]:
    """Components from a folder written by :meth:`DepthLabPipeline.save_pretrained`."""
    from safetensors.torch import load_file

    def weights(name: str) -> dict[str, torch.Tensor]:
        return load_state_dict_file(root / name / "model.safetensors")

    vae = load_strict(
        build_from_config(AutoencoderKL, AutoencoderKL.load_config(root / "vae")),
        weights("vae"),
        f"{root}/vae",
        dtype=dtype,
    )
    unets = {}
    for name in ("reference_unet", "estimation_unet"):
        config = dict(UNet2DConditionModel.load_config(root / name))
        unets[name] = _load_unet(config, config["in_channels"], weights(name), f"{root}/{name}", dtype)
    projection = load_strict(
        build_from_config(ImageProjection, ImageProjection.load_config(root / "image_projection")),
        weights("image_projection"),
        f"{root}/image_projection",
        dtype=dtype,
    )
    components: dict[str, Any] = {
        "vae": vae,
        **unets,
        "image_encoder": load_clip_vision(root / "image_encoder", dtype, weights("image_encoder")),
        "image_projection": projection,
        "scheduler": schedulers.load_scheduler(root / "scheduler"),
        "image_processor": _load_image_processor(root / "image_processor"),
    }
    if (root / "unconditional_context.safetensors").is_file():
        components["unconditional_context"] = load_file(str(root / "unconditional_context.safetensors"))[
            "context"
        ]
    if load_text_encoder and (root / "text_encoder").is_dir():
        components["text_encoder"], components["tokenizer"] = _load_text_encoder(root, dtype)
    return components


def _load_image_processor(folder: Path) -> Any:
    processor = clip_image_processor()
    if (folder / "preprocessor_config.json").is_file():
        processor = type(processor).from_pretrained(folder)
    return processor


# ---------------------------------------------------------------------- tiny configurations
MARIGOLD_SCHEDULER_CONFIG = {
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
TINY_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "block_out_channels": (16, 32, 32, 32),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}
TINY_UNET_CONFIG = {
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
TINY_CLIP_VISION_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1024,
    "hidden_act": "gelu",
}
