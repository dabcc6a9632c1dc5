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

import contextlib
import functools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderTiny,
    DDIMScheduler,
    DiffusionPipeline,
    LCMScheduler,
    UNet2DConditionModel,
)
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm
from transformers import CLIPVisionModelWithProjection

from depthlab import inputs as input_checks
from depthlab import postprocessing, preprocessing
from depthlab.models import conditioning, loading, schedulers, speed, streaming
from depthlab.models.components import ImageProjection
from depthlab.models.loading import (
    CheckpointPaths,
    CheckpointSource,
    check_device_dtype,
    clip_image_processor,
    resolve_dtype,
)
from depthlab.models.reference_attention import ReferenceAttention
from depthlab.models.tiny import tiny_components
from depthlab.outputs import DepthLabOutput

logger = logging.getLogger(__name__)

__all__ = ["DepthLabPipeline"]

_FORMAT_VERSION = 1
_PRESERVE_MODES = ("none", "exact", "smooth")


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
        tiny_vae: optional ``AutoencoderTiny``; when set, it decodes instead of ``vae``
            (**approximate**, see :meth:`optimize`).

    Call defaults: ``default_num_inference_steps`` (50), ``default_processing_resolution`` (768)
    and ``default_strength`` (0.8) are registered in ``pipe.config`` (diffusers'
    ``register_to_config``), stored with the weights by :meth:`save_pretrained` and read back by
    :meth:`from_pretrained`; a call argument left at None takes the model's default.

    Building the pipeline does not touch the modules it is given. Each call installs the
    reference-attention processors (:attr:`reference_attention`) on the two U-Nets for its
    duration and puts back the ones they had; ``pipe.reference_attention.install()`` installs them
    for good (``uninstall()`` restores), as do its ``capture()`` and ``set_features()``.
    """

    model_cpu_offload_seq = "image_encoder->image_projection->vae->reference_unet->estimation_unet->vae"
    _optional_components = ["text_encoder", "tokenizer", "image_processor", "tiny_vae"]

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
        default_num_inference_steps: int = 50,
        default_processing_resolution: int = 768,
        default_strength: float = 0.8,
        tiny_vae: AutoencoderTiny | None = None,
    ) -> None:
        super().__init__()
        _check_call_defaults(default_num_inference_steps, default_processing_resolution, default_strength)
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
            tiny_vae=tiny_vae,
        )
        self.register_to_config(
            default_num_inference_steps=default_num_inference_steps,
            default_processing_resolution=default_processing_resolution,
            default_strength=default_strength,
        )
        self.reference_attention = ReferenceAttention(
            reference_unet, estimation_unet, fp16_rounding=reference_fp16_rounding
        )
        self._checkpoint_paths: CheckpointPaths | None = None
        self._unconditional_context: torch.Tensor | None = None
        self.batch_vae_encodes = True  # the 3-4 VAE encodes of an image in one call (optimize())
        self._tiny_vae_source: str | None = None
        self._channels_last = False
        self._compile_mode: str | None = None
        self._weight_sources: dict[str, loading.WeightSource] = {}
        self._low_memory = False

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
        low_memory: bool = False,
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
            low_memory: keep only what runs in memory (see :meth:`enable_low_memory`): on CPU,
                CLIP and the two U-Nets are read from their files when their stage starts and
                released when it ends (same answer; costs the reading time per call); on an
                accelerator, every model lives on the CPU and moves to the device while it runs
                (accelerate hooks, as diffusers' ``enable_model_cpu_offload``).

        The call defaults saved with a :meth:`save_pretrained` folder (``default_num_inference_steps``,
        ...) are restored; the original layout gets the class defaults (50 steps, 768, 0.8).

        Raises:
            CheckpointNotFoundError: weights missing (the message lists them and how to get them).
            CheckpointError: a tensor is missing, unexpected or mis-shaped.
        """
        dtype = resolve_dtype(torch_dtype)
        device = torch.device(device) if device is not None else torch.device("cpu")
        check_device_dtype(device, dtype)
        paths = loading.resolve_checkpoints(source, with_text_encoder=load_text_encoder)
        lazy = low_memory and device.type == "cpu"
        defer = loading.LARGE_COMPONENTS if lazy else ()
        components = loading.load_pipeline_components(paths, load_text_encoder, dtype, defer=defer)
        unconditional = components.pop("unconditional_context", None)
        sources = components.pop("weight_sources")
        pipe = cls(**components, reference_fp16_rounding=reference_fp16_rounding)
        pipe._checkpoint_paths = paths
        pipe._unconditional_context = unconditional
        pipe._weight_sources = sources
        if lazy:
            pipe._low_memory = True  # models in `defer` are still on the meta device
            return pipe
        if low_memory:
            pipe.enable_low_memory(device)
            return pipe
        return pipe.to(device)

    def enable_low_memory(self, device: torch.device | str | None = None) -> DepthLabPipeline:
        """Hold in memory only the model that runs (same answer, lower peak memory).

        * accelerator ``device`` (``"cuda"``, ...): ``enable_model_cpu_offload`` (accelerate hooks
          along ``model_cpu_offload_seq``): every model waits on the CPU and is moved to the
          device for its forward, the previous one is moved back.
        * CPU (``device`` None or ``"cpu"``): the CLIP image encoder and both U-Nets are released
          now (:func:`~depthlab.models.streaming.release_weights`) and, per call, read from their
          checkpoint files tensor by tensor when their stage starts, released when it ends (CLIP
          once per image batch, the reference U-Net for the reference pass, the estimation U-Net
          for the denoising loop). Needs a pipeline made by :meth:`from_pretrained`. Peak memory
          is then about one U-Net plus the VAE; each call pays the reading of the files.

        Raises:
            ValueError: CPU mode on a pipeline that was not loaded from files.
        """
        device = torch.device(device) if device is not None else torch.device("cpu")
        if device.type != "cpu":
            self.enable_model_cpu_offload(device=device)
            return self
        missing = [name for name in loading.LARGE_COMPONENTS if name not in self._weight_sources]
        if missing:
            raise ValueError(
                "`low_memory` on CPU re-reads the models from their checkpoint files, but this "
                f"pipeline has none for {', '.join(missing)}: load it with "
                "`DepthLabPipeline.from_pretrained(..., low_memory=True)`"
            )
        for name in loading.LARGE_COMPONENTS:
            streaming.release_weights(getattr(self, name).to("cpu"))
        self._low_memory = True
        return self

    @property
    def device(self) -> torch.device:
        """Where the pipeline runs (low-memory CPU mode: the VAE's, as the large models are on meta)."""
        if self._low_memory:
            return self.vae.device
        return super().device

    @contextlib.contextmanager
    def _resident(self, name: str):
        """In low-memory CPU mode: read model ``name`` from its files for the block, then release it."""
        if not self._low_memory:
            yield getattr(self, name)
            return
        model = getattr(self, name)
        self._weight_sources[name].load_into(model, model.dtype)
        try:
            yield model
        finally:
            streaming.release_weights(model)

    @classmethod
    def build_tiny(cls, seed: int = 0, reference_fp16_rounding: bool = True) -> DepthLabPipeline:
        """A tiny random-weight pipeline with the real architecture families (tests, smoke runs).

        Same configuration as the golden test checkpoints: VAE channels (16, 32, 32, 32), U-Net
        channels (8, 16, 32, 32) with 1024-d cross-attention, a 2-layer CLIP vision tower.
        """
        return cls(**tiny_components(seed), reference_fp16_rounding=reference_fp16_rounding)

    def save_pretrained(
        self, save_directory: str | Path, dtype: torch.dtype | str | None = None, overwrite: bool = False
    ) -> Path:
        """Write all components as safetensors + configs (loads fast with :meth:`from_pretrained`).

        ``model_index.json`` also stores the call defaults (``default_num_inference_steps``,
        ``default_processing_resolution``, ``default_strength``).

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
            **{name: self.config[name] for name in loading.CALL_DEFAULTS},
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
            large = name in loading.LARGE_COMPONENTS
            with self._resident(name) if large else contextlib.nullcontext():  # low_memory: read it
                state = {
                    k: (v.to(store_dtype) if store_dtype is not None and v.is_floating_point() else v)
                    .detach()
                    .cpu()
                    .contiguous()
                    for k, v in model.state_dict().items()
                }
                save_file(state, str(folder / "model.safetensors"))
                del state
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

    # ------------------------------------------------------------------ speed options
    def optimize(
        self,
        *,
        channels_last: bool | None = None,
        compile: bool | None = None,
        compile_mode: str | None = None,
        tiny_vae: str | Path | AutoencoderTiny | bool | None = None,
        batch_vae_encodes: bool | None = None,
        local_files_only: bool | None = None,
    ) -> DepthLabPipeline:
        """Turn speed options on or off (None leaves one as it is); returns the pipeline.

        Measured on CPU in ``benchmarks/results/speed_options.md``; none is on by default except
        ``batch_vae_encodes``.

        Args:
            channels_last: U-Nets and VAE(s) in channels-last memory format (same answer up to
                float32 rounding, usually faster on GPU with fp16/bf16).
            compile: ``torch.compile`` the estimation U-Net in place (``nn.Module.compile``; the
                reference-attention processors are then installed for good so that the compiled
                graph is reused by every call). The first call compiles (tens of seconds to
                minutes); same answer up to float32 rounding. Cannot be undone (reload instead).
            compile_mode: ``torch.compile`` mode (see :data:`depthlab.models.speed.COMPILE_MODES`).
            tiny_vae: decode with ``AutoencoderTiny``: a hub id (``"madebyollin/taesd"``), a
                folder, a module, ``True`` for ``madebyollin/taesd``, or ``False`` to go back to
                the VAE. **Approximate**: the depth differs from the original's decoder by much
                more than the conformance tolerances; every output says so in
                ``info["approximate"]``.
            batch_vae_encodes: encode RGB, mask, masked depth and depth in one VAE call (default
                True; False: one call each, a quarter of the encoder's activation memory).
            local_files_only: never download the tiny VAE (default: as ``HF_HUB_OFFLINE``).

        Raises:
            TinyVAENotFoundError: the tiny VAE is neither a folder nor obtainable from the hub.
            ValueError / TypeError: a bad option (named with its value).
        """
        for name, value in (
            ("channels_last", channels_last),
            ("compile", compile),
            ("batch_vae_encodes", batch_vae_encodes),
        ):
            if value is not None and not isinstance(value, bool):
                raise TypeError(f"`{name}` must be True, False or None; got {value!r}")
        if compile is False and speed.is_compiled(self.estimation_unet):
            raise ValueError(
                "`compile`=False: the estimation U-Net is already compiled; load the pipeline again"
            )
        if compile_mode is not None and compile_mode not in speed.COMPILE_MODES:
            raise ValueError(f"`compile_mode` must be one of {speed.COMPILE_MODES}; got {compile_mode!r}")
        if tiny_vae is not None and tiny_vae is not False:
            if tiny_vae is True:
                tiny_vae = speed.TINY_VAE_DEFAULT
            if isinstance(tiny_vae, AutoencoderTiny):
                module, source = tiny_vae, type(tiny_vae).__name__
            else:
                module = speed.load_tiny_vae(
                    tiny_vae, torch_dtype=self.vae.dtype, local_files_only=local_files_only
                )
                source = str(tiny_vae)
            if module.config.latent_channels != self.vae.config.latent_channels:
                raise ValueError(
                    f"`tiny_vae` has {module.config.latent_channels} latent channels; the VAE has "
                    f"{self.vae.config.latent_channels}"
                )
            self.register_modules(tiny_vae=module.to(self.vae.device, self.vae.dtype))
            self._tiny_vae_source = source
        elif tiny_vae is False:
            self.register_modules(tiny_vae=None)
            self._tiny_vae_source = None
        if batch_vae_encodes is not None:
            self.batch_vae_encodes = batch_vae_encodes
        if channels_last is not None:
            speed.to_channels_last(
                (self.vae, self.reference_unet, self.estimation_unet, self.tiny_vae), channels_last
            )
            self._channels_last = channels_last
        elif self.tiny_vae is not None and self._channels_last:
            speed.to_channels_last((self.tiny_vae,))
        if compile and not speed.is_compiled(self.estimation_unet):
            self.reference_attention.install()
            speed.compile_module(self.estimation_unet, mode=compile_mode)
            self._compile_mode = compile_mode or "default"
        return self

    def optimizations(self) -> dict[str, Any]:
        """The speed options in effect (also in every output's ``info["optimizations"]``)."""
        return {
            "batch_vae_encodes": self.batch_vae_encodes,
            "channels_last": self._channels_last,
            "compile": self._compile_mode if speed.is_compiled(self.estimation_unet) else None,
            "tiny_vae": self._tiny_vae_source if self.tiny_vae is not None else None,
            "dtype": str(self.estimation_unet.dtype).removeprefix("torch."),
        }

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def encode_image_condition(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """CLIP image embedding of the original-size images -> projected context ``[B, 1, 1024]``."""
        pixel_values = self.image_processor(images=list(images), return_tensors="pt").pixel_values
        with self._resident("image_encoder") as encoder:
            pixel_values = pixel_values.to(device=encoder.device, dtype=encoder.dtype)
            image_embeds = encoder(pixel_values).image_embeds  # [B, 1024]
        return self.image_projection(image_embeds)  # [B, 1, 1024]

    @torch.no_grad()
    def encode_to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [-1, 1] -> latent ``[B, 4, H/8, W/8]`` (posterior mean x scaling)."""
        return conditioning.encode_latent(self.vae, x)

    @torch.no_grad()
    def decode_from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent ``[B, 4, h, w]`` -> channel mean of the decoded image ``[B, 1, 8h, 8w]`` (float32).

        With a tiny VAE set (:meth:`optimize`), it decodes instead: approximate.
        """
        if self.tiny_vae is not None:
            decoded = speed.tiny_vae_decode(self.tiny_vae, latent)
        else:
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
            if self._low_memory:  # computed once; the text encoder is not needed again
                self.register_modules(text_encoder=None)
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
        text_encoder, tokenizer = loading.load_text_encoder(folder)
        self.register_modules(text_encoder=text_encoder.to(self.device, self.dtype), tokenizer=tokenizer)

    # ------------------------------------------------------------------ inference
    def check_inputs(
        self,
        image: Any,
        depth: Any,
        known_mask: Any,
        *,
        num_inference_steps: int,
        processing_resolution: int,
        strength: float,
        normalize_scale: float,
        guidance_scale: float,
        ensemble_size: int,
        batch_size: int,
        output_type: str,
        preserve_known: str,
        resize_mode: str,
        fill_mode: str,
        timestep_spacing: str | None,
        generator: Any,
        noise: Any,
        latents: Any,
    ) -> _CheckedInputs:
        """Validate every argument before any work; raise ``ValueError``/``TypeError`` naming it.

        Returns the inputs standardised to numpy (``uint8 [H, W, 3]`` RGB, ``float32 [H, W]``
        depth, ``bool [H, W]`` known mask), one generator per image and the given noise/latents
        split into ``[1, 4, h, w]`` rows (image-major, member-minor).
        """
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
        for name, value, choices in (
            ("output_type", output_type, ("np", "pt")),
            ("preserve_known", preserve_known, _PRESERVE_MODES),
            ("resize_mode", resize_mode, preprocessing.RESIZE_MODES),
            ("fill_mode", fill_mode, preprocessing.FILL_MODES),
            ("timestep_spacing", timestep_spacing, (None, "leading", "trailing", "linspace")),
        ):
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {choices}; got {value!r}")
        if timestep_spacing is not None and schedulers.is_consistency_scheduler(self.scheduler):
            raise ValueError(
                f"`timestep_spacing`={timestep_spacing!r} applies to DDIM; this checkpoint samples with "
                "its consistency (LCM) scheduler: leave it None"
            )
        if latents is not None and strength < 1:
            raise ValueError(
                "`latents` is the initial latent for strength == 1; with strength < 1 "
                "the start is the noised depth latent (pass `noise` instead)"
            )
        pairs, batched = _standardize_inputs(image, depth, known_mask)
        latent_sizes = [preprocessing.latent_size(*mask.shape, processing_resolution) for _, _, mask in pairs]
        return _CheckedInputs(
            pairs=pairs,
            batched=batched,
            generators=_per_image_generators(generator, len(pairs)),
            noise_rows=self._as_rows(noise, "noise", latent_sizes, ensemble_size),
            latent_rows=self._as_rows(latents, "latents", latent_sizes, ensemble_size),
        )

    def _as_rows(
        self, value: Any, name: str, latent_sizes: list[tuple[int, int]], ensemble_size: int
    ) -> list[torch.Tensor] | None:
        """Split user-given noise/latents into one ``[1, 4, h, w]`` tensor per (image, member) row."""
        if value is None:
            return None
        n_images = len(latent_sizes)
        n_rows = n_images * ensemble_size
        if isinstance(value, (list, tuple)):
            if len(value) != n_images:
                raise ValueError(
                    f"`{name}` as a list must have one entry per image ({n_images}); got {len(value)}"
                )
            rows = []
            for index, part in enumerate(_to_tensor(v, name) for v in value):
                part = part.reshape(-1, *part.shape[-3:]) if part.ndim >= 3 else part
                if part.shape[0] != ensemble_size:
                    raise ValueError(
                        f"`{name}` for image {index} must have {ensemble_size} rows; got {tuple(part.shape)}"
                    )
                rows.extend(part[i : i + 1] for i in range(ensemble_size))
        else:
            tensor = _to_tensor(value, name)
            if tensor.ndim == 3:
                tensor = tensor[None]
            if tensor.ndim != 4 or tensor.shape[0] != n_rows:
                raise ValueError(
                    f"`{name}` must have shape [{n_rows}, 4, h, w] (images x ensemble_size rows); "
                    f"got {tuple(tensor.shape)}"
                )
            rows = [tensor[i : i + 1] for i in range(n_rows)]
        for row_index, row in enumerate(rows):
            index = row_index // ensemble_size
            expected = (1, self.vae.config.latent_channels, *latent_sizes[index])
            if tuple(row.shape) != expected:
                raise ValueError(
                    f"`{name}` row {row_index} has shape {tuple(row.shape)}; image {index} needs "
                    f"{expected} (processing size padded to multiples of 8, / 8)"
                )
        return rows

    @torch.no_grad()
    def __call__(
        self,
        image: Any,
        depth: Any,
        known_mask: Any = None,
        *,
        num_inference_steps: int | None = None,
        processing_resolution: int | None = None,
        strength: float | None = None,
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
            num_inference_steps: DDIM steps of the full schedule (>= 1); None: the model's
                ``default_num_inference_steps`` (50 unless saved otherwise).
            processing_resolution: longest side at which the model runs; 0 = input size.
                Sizes that are not multiples of 8 are padded and cropped back. None: the model's
                ``default_processing_resolution`` (768 unless saved otherwise).
            strength: fraction of the schedule that is run, in (0, 1]; < 1 starts from the noised
                pre-filled depth, 1 from pure noise. None: the model's ``default_strength`` (0.8
                unless saved otherwise).
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
            fill_mode: ``"exact"`` (original nearest pre-fill and Delaunay linear fill),
                ``"fast"`` (distance transform and a local triangulation; much faster on dense
                masks at high resolution, not bit-identical: outside the conformance tolerance on
                3 of 5 golden cases) or ``"auto"``, which is ``"exact"`` on every device for that
                reason (:func:`depthlab.preprocessing.resolve_fill_mode`).
            timestep_spacing: None (the scheduler's, "leading" for Marigold) or "trailing" (better
                for few-step runs), "linspace".

        Returns:
            :class:`~depthlab.outputs.DepthLabOutput`.
        """
        # 1. Check every argument and input before any work (None: the model's defaults).
        if num_inference_steps is None:
            num_inference_steps = self.config.default_num_inference_steps
        if processing_resolution is None:
            processing_resolution = self.config.default_processing_resolution
        if strength is None:
            strength = self.config.default_strength
        checked = self.check_inputs(
            image,
            depth,
            known_mask,
            num_inference_steps=num_inference_steps,
            processing_resolution=processing_resolution,
            strength=strength,
            normalize_scale=normalize_scale,
            guidance_scale=guidance_scale,
            ensemble_size=ensemble_size,
            batch_size=batch_size,
            output_type=output_type,
            preserve_known=preserve_known,
            resize_mode=resize_mode,
            fill_mode=fill_mode,
            timestep_spacing=timestep_spacing,
            generator=generator,
            noise=noise,
            latents=latents,
        )
        timings: dict[str, float] = defaultdict(float)

        # 2. Prepare (numpy): pre-fill, resize + pad to x8, normalise, linear fill; [H8, W8] each.
        items = []
        for rgb, depth_array, mask in checked.pairs:
            item = preprocessing.prepare_input(
                rgb, depth_array, mask, processing_resolution, normalize_scale, refine, resize_mode, fill_mode
            )
            for key, seconds in item.seconds.items():
                timings[key] += seconds
            items.append(item)

        # 3-6 run with the reference-attention processors installed on the U-Nets (restored after).
        with self.reference_attention.installed():
            # 3. Encode: CLIP context [N, 1, 1024] (+ unconditional [1, 1, 1024] for guidance); VAE
            #    latents [1, 4, h, w] and reference features of every image, once.
            start = time.perf_counter()
            context = self.encode_image_condition([item.rgb for item in items]).to(self.estimation_unet.dtype)
            uncond = None
            if guidance_scale > 1:
                uncond = self.unconditional_context().to(self._execution_device, self.estimation_unet.dtype)
            timings["conditioning"] += time.perf_counter() - start
            start = time.perf_counter()
            encoded, features = self._encode_items(items, context, need_depth_latent=strength < 1 or blend)
            timings["encode"] += time.perf_counter() - start

            # 4. Timesteps: DDIM: the last int(N * strength) of the schedule; a consistency student
            #    (LCM): N steps inside the first `strength` of the schedule (models/schedulers.py).
            scheduler = self.scheduler
            if timestep_spacing is not None:
                scheduler = DDIMScheduler.from_config(scheduler.config, timestep_spacing=timestep_spacing)
            reset = functools.partial(
                schedulers.inference_timesteps,
                scheduler,
                num_inference_steps,
                strength,
                self._execution_device,
            )
            timesteps = reset()

            # 5. Draw noise: rows (image, member), image-major; [1, 4, h, w] each.
            rows = [(index, member) for index in range(len(items)) for member in range(ensemble_size)]
            row_noise, row_init = self._draw_noise(items, rows, checked, strength)

            # 6. Denoise rows in chunks of `batch_size` rows of equal latent size -> [1, 4, h, w] each.
            start = time.perf_counter()
            with self._resident("estimation_unet"):
                final_latents = self._denoise(
                    scheduler,
                    timesteps,
                    items,
                    rows,
                    encoded,
                    features,
                    context,
                    uncond,
                    row_noise,
                    row_init,
                    checked.generators,
                    reset,
                    strength=strength,
                    blend=blend,
                    guidance_scale=guidance_scale,
                    batch_size=batch_size,
                    show_progress_bar=show_progress_bar,
                )
            timings["denoise"] += time.perf_counter() - start

        # 7. Decode each row: [1, 4, h, w] -> [H8, W8] -> crop, depth units, input size [H, W].
        start = time.perf_counter()
        members: list[list[np.ndarray]] = [[] for _ in items]
        for (index, _), latent in zip(rows, final_latents, strict=True):
            members[index].append(self._decode_row(items[index], latent, normalize_scale))
        timings["decode"] += time.perf_counter() - start

        # 8. Aggregate the ensemble: [E, H, W] -> mean [H, W], std [H, W] (E > 1).
        stacks = [np.stack(member_depths) for member_depths in members]  # [E, H, W] float64 each
        means = [stack.mean(axis=0) for stack in stacks]
        uncertainties = (
            [stack.std(axis=0).astype(np.float32) for stack in stacks] if ensemble_size > 1 else None
        )

        # 9. Postprocess: optionally keep the known depth, pack the output.
        depths = [
            postprocessing.preserve_known_depth(mean, item.depth, item.known_mask, preserve_known).astype(
                np.float32
            )
            for mean, item in zip(means, items, strict=True)
        ]
        info = {
            "processing_size": [list(item.resized.size) for item in items],
            "resize_mode": [item.resized.resize_mode for item in items],
            "known_range": [(float(item.lo), float(item.hi)) for item in items],
            "timesteps": [int(t) for t in timesteps],
            "seconds": dict(timings),
            "fill_mode": preprocessing.resolve_fill_mode(fill_mode),
            "optimizations": self.optimizations(),
        }
        if self.tiny_vae is not None:
            info["approximate"] = (
                f"approximate: decoded with the tiny VAE {self._tiny_vae_source} (AutoencoderTiny), not the "
                "original's decoder; the depth differs by more than the conformance tolerances"
            )
        latent_out = None
        if output_latent:
            shapes = {tuple(x.shape) for x in final_latents}
            latent_out = torch.cat(final_latents) if len(shapes) == 1 else list(final_latents)
        batched = checked.batched
        self.maybe_free_model_hooks()  # model offload (low_memory on an accelerator): last model back
        return DepthLabOutput(
            depth=_pack(depths, batched, output_type),
            known_mask=_pack([item.known_mask for item in items], batched, output_type),
            uncertainty=_pack(uncertainties, batched, output_type) if uncertainties is not None else None,
            latent=latent_out,
            method="depthlab",
            info=info,
        )

    # ------------------------------------------------------------------ stages of __call__
    def _encode_items(
        self, items: list[preprocessing.PreparedInput], context: torch.Tensor, need_depth_latent: bool
    ) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
        """VAE latents and reference features of every image (see :meth:`_encode_item`)."""
        device = self._execution_device
        encoded, features = [], []
        with self._resident("reference_unet"):
            for index, item in enumerate(items):
                latents = self._encode_item(item, need_depth_latent)
                with self.reference_attention.capture():
                    self.reference_unet(
                        latents["rgb"],  # [1, 4, h, w]
                        torch.zeros((), dtype=torch.long, device=device),
                        encoder_hidden_states=context[index : index + 1],  # [1, 1, 1024]
                    )
                encoded.append(latents)
                features.append(self.reference_attention.features)
        self.reference_attention.clear()
        return encoded, features

    def _encode_item(
        self, item: preprocessing.PreparedInput, need_depth_latent: bool
    ) -> dict[str, torch.Tensor]:
        """VAE latents of one item (each ``[1, 4, h, w]``) and its latent-size unknown mask ``[1, 1, h, w]``."""
        device, dtype = self._execution_device, self.vae.dtype
        unknown = ~item.resized.known_mask  # [H8, W8], True = unknown, the model's mask input
        latents = conditioning.encode_conditioning(
            self.vae,
            item.resized.rgb,
            unknown,
            item.masked_filled,
            item.normalized if need_depth_latent else None,
            device=device,
            one_call=self.batch_vae_encodes,
        )
        unknown_down = torch.nn.functional.interpolate(
            torch.from_numpy(unknown.astype(np.float32))[None, None], size=item.latent_size, mode="nearest"
        ).to(device, dtype)  # [1, 1, h, w]
        return {
            "rgb": latents.rgb,
            "mask": latents.mask,
            "masked_depth": latents.masked_depth,
            "depth": latents.depth if latents.depth is not None else latents.rgb,
            "unknown_down": unknown_down,
        }

    def _draw_noise(
        self,
        items: list[preprocessing.PreparedInput],
        rows: list[tuple[int, int]],
        checked: _CheckedInputs,
        strength: float,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Noise per row (and the initial latent for ``strength == 1``), drawn in row order on CPU."""
        device, dtype = self._execution_device, self.estimation_unet.dtype
        cpu = torch.device("cpu")
        row_noise, row_init = [], []
        for row_index, (index, _) in enumerate(rows):
            shape = (1, self.vae.config.latent_channels, *items[index].latent_size)
            gen = checked.generators[index]
            if checked.noise_rows is not None:
                eps = checked.noise_rows[row_index]
            else:
                eps = randn_tensor(shape, generator=gen, device=cpu, dtype=torch.float32)
            row_noise.append(eps.to(device, dtype))
            if strength >= 1:
                if checked.latent_rows is not None:
                    init = checked.latent_rows[row_index]
                else:
                    init = randn_tensor(shape, generator=gen, device=cpu, dtype=torch.float32)
                row_init.append(init.to(device, dtype))
        return row_noise, row_init

    def _denoise(
        self,
        scheduler: DDIMScheduler | LCMScheduler,
        timesteps: torch.Tensor,
        items: list[preprocessing.PreparedInput],
        rows: list[tuple[int, int]],
        encoded: list[dict[str, torch.Tensor]],
        features: list[dict[str, torch.Tensor]],
        context: torch.Tensor,
        uncond: torch.Tensor | None,
        row_noise: list[torch.Tensor],
        row_init: list[torch.Tensor],
        generators: list[torch.Generator | None],
        reset: Callable[[], torch.Tensor],
        *,
        strength: float,
        blend: bool,
        guidance_scale: float,
        batch_size: int,
        show_progress_bar: bool,
    ) -> list[torch.Tensor]:
        """Sampling loop over chunks of rows; returns the final latent ``[1, 4, h, w]`` of every row.

        ``reset()`` sets the scheduler's timesteps again before each chunk (a stateful LCM
        scheduler counts its steps); LCM's re-noising between steps draws from the generator of
        the chunk's first image.
        """
        final_latents: list[torch.Tensor | None] = [None] * len(rows)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for row_index, (index, _) in enumerate(rows):
            groups[items[index].latent_size].append(row_index)
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
        for chunk in chunks:
            indices = [rows[i][0] for i in chunk]
            reset()
            step_generator = generators[indices[0]]
            self._set_chunk_features(indices, features)
            enc = {key: torch.cat([encoded[i][key] for i in indices]) for key in encoded[indices[0]]}
            eps = torch.cat([row_noise[i] for i in chunk])  # [B, 4, h, w]
            ctx = torch.cat([context[i : i + 1] for i in indices])  # [B, 1, 1024]
            if strength < 1:
                latent = scheduler.add_noise(enc["depth"], eps, timesteps[:1])
            else:
                latent = torch.cat([row_init[i] for i in chunk])
            unknown = enc["unknown_down"]  # [B, 1, h, w], 1 = unknown
            for step, t in enumerate(timesteps):
                unet_input = conditioning.estimation_input(
                    latent, enc["mask"], enc["masked_depth"]
                )  # [B, 12, h, w]
                v_pred = self.estimation_unet(unet_input, t, encoder_hidden_states=ctx).sample  # [B, 4, h, w]
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
        return final_latents

    def _set_chunk_features(self, indices: list[int], features: list[dict[str, torch.Tensor]]) -> None:
        """Reference features for a chunk: one row if all rows come from one image, else one per row."""
        if len(set(indices)) == 1:
            self.reference_attention.set_features(features[indices[0]])
        else:
            self.reference_attention.set_features(
                {
                    name: torch.cat([features[i][name] for i in indices])
                    for name in self.reference_attention.names
                }
            )

    def _decode_row(
        self, item: preprocessing.PreparedInput, latent: torch.Tensor, normalize_scale: float
    ) -> np.ndarray:
        """Final latent ``[1, 4, h, w]`` -> depth ``[H, W]`` (float64, input units and size)."""
        decoded = self.decode_from_latent(latent)[0, 0]  # [H8, W8]
        height, width = item.resized.size
        prediction = decoded[:height, :width].cpu().numpy()  # [H', W'] in [-s, s]
        denorm = postprocessing.denormalize_depth(prediction, item.lo, item.hi, normalize_scale)
        return postprocessing.resize_to_input(denorm, item.depth.shape)


@dataclass
class _CheckedInputs:
    """What :meth:`DepthLabPipeline.check_inputs` returns."""

    pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (rgb uint8 [H, W, 3], depth, known_mask)
    batched: bool
    generators: list[torch.Generator | None]
    noise_rows: list[torch.Tensor] | None
    latent_rows: list[torch.Tensor] | None


def _check_call_defaults(steps: Any, resolution: Any, strength: Any) -> None:
    """``ValueError``/``TypeError`` naming the default that is out of range."""
    for name, value, low in (
        ("default_num_inference_steps", steps, 1),
        ("default_processing_resolution", resolution, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"`{name}` must be an integer; got {value!r}")
        if value < low:
            raise ValueError(f"`{name}` must be >= {low}; got {value}")
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating)):
        raise TypeError(f"`default_strength` must be a number; got {strength!r}")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"`default_strength` must be in (0, 1]; got {strength}")


def _standardize_inputs(
    image: Any, depth: Any, known_mask: Any
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], bool]:
    """Images, depths and masks (single or lists) -> checked numpy triples and whether it was a batch."""
    batched = isinstance(image, (list, tuple))
    images = list(image) if batched else [image]
    if batched:
        if not isinstance(depth, (list, tuple)) or len(depth) != len(images):
            got = type(depth).__name__
            if isinstance(depth, (list, tuple)):
                got += f" of length {len(depth)}"
            raise ValueError(
                f"`depth` must be a list of the same length as `image` ({len(images)}); got {got}"
            )
        if known_mask is not None and (
            not isinstance(known_mask, (list, tuple)) or len(known_mask) != len(images)
        ):
            raise ValueError(f"`known_mask` must be None or a list of length {len(images)}")
    if not images:
        raise ValueError("`image` is an empty list")
    depths = list(depth) if batched else [depth]
    if not batched:
        masks = [known_mask]
    else:
        masks = list(known_mask) if known_mask is not None else [None] * len(images)
    pairs = []
    for index, (img, dep, msk) in enumerate(zip(images, depths, masks, strict=True)):
        rgb = input_checks.to_rgb_uint8(img, name="image")
        depth_array = input_checks.to_depth_array(dep, name="depth")
        mask = input_checks.resolve_known_mask(msk, depth_array, name="known_mask")
        input_checks.check_completion_inputs(rgb, depth_array, mask, index=index if batched else None)
        pairs.append((rgb, depth_array, mask))
    return pairs, batched


def _per_image_generators(generator: Any, n_images: int) -> list[torch.Generator | None]:
    if generator is None or isinstance(generator, torch.Generator):
        return [generator] * n_images
    if isinstance(generator, (list, tuple)):
        if len(generator) != n_images or not all(isinstance(g, torch.Generator) for g in generator):
            raise ValueError(f"`generator` as a list must hold {n_images} torch.Generator objects")
        return list(generator)
    raise TypeError(
        f"`generator` must be a torch.Generator or a list of them; got {type(generator).__name__}"
    )


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        return value
    raise TypeError(f"`{name}` must be a torch tensor or numpy array; got {type(value).__name__}")


def _pack(values: list[Any], batched: bool, output_type: str) -> Any:
    """Single input -> one array; batch -> stacked [N, ...] when sizes agree, else a list."""
    if output_type == "pt":
        values = [torch.from_numpy(np.ascontiguousarray(v)) if v is not None else None for v in values]
    if not batched:
        return values[0]
    if len({tuple(v.shape) for v in values}) == 1:
        return torch.stack(values) if output_type == "pt" else np.stack(values)
    return values
