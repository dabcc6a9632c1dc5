"""Finding and strictly loading DepthLab checkpoints.

Three sources are understood:

* **original layout** (what the DepthLab README tells users to download)::

      <root>/marigold-depth-v1-0/               diffusers layout (vae/, unet/, scheduler/, ...)
      <root>/CLIP-ViT-H-14-laion2B-s32B-b79K/   transformers CLIP (full CLIPModel checkpoint)
      <root>/DepthLab/{denoising_unet,reference_unet,mapping_layer}.pth

* **depthlab layout**, written by ``DepthLabPipeline.save_pretrained`` (``model_index.json`` with
  ``"_class_name": "DepthLabPipeline"``, one safetensors folder per component);
* **hub ids** of the published weights, resolved through the huggingface_hub cache.

Loading is strict: every tensor of every model must be present with the right shape and nothing
unexpected may be left over, except the text tower of the CLIP checkpoint, which the vision model
does not use and which is skipped by name. Models are built on the meta device and their tensors
assigned from the checkpoint, so no time is spent on random initialisation.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from torch import nn
from transformers import CLIPConfig, CLIPVisionConfig, CLIPVisionModelWithProjection

from depthlab.models import schedulers, streaming
from depthlab.models.components import REFERENCE_HEAD_PREFIXES, ImageProjection, remove_output_head
from depthlab.models.conditioning import REFERENCE_IN_CHANNELS
from depthlab.models.hub import (
    CLIP_DIR,
    DEPTHLAB_DIR,
    DEPTHLAB_FILES,
    ENV_VAR,
    HUB_IDS,
    MARIGOLD_DIR,
    CheckpointNotFoundError,
    download_help,
    hub_snapshot,
)

logger = logging.getLogger(__name__)

__all__ = [
    "HUB_IDS",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointPaths",
    "find_checkpoints",
    "resolve_checkpoints",
    "load_state_dict_file",
    "load_component_weights",
    "load_strict",
    "build_from_config",
    "resolve_dtype",
    "check_device_dtype",
    "clip_image_processor",
    "load_clip_vision",
    "load_text_encoder",
    "load_unet",
    "load_pipeline_components",
    "component_files",
    "WeightSource",
    "LARGE_COMPONENTS",
]

# Keys of a full CLIPModel checkpoint that belong to the text tower, not used by the vision model.
CLIP_TEXT_PREFIXES = ("text_model.", "text_projection.", "logit_scale")


class CheckpointError(RuntimeError, ValueError):
    """A checkpoint that does not match the model or cannot be read.

    Missing, unexpected or mis-shaped tensors, a truncated file, a pickle that is not a plain
    state dict. Also a ``ValueError``: it is a bad input (CLI exit status 2).
    """


@dataclass(frozen=True)
class CheckpointPaths:
    """Where each part of a checkpoint lives.

    Attributes:
        layout: ``"original"`` or ``"depthlab"``.
        marigold: folder in diffusers layout with ``vae/``, ``unet/``, ``scheduler/`` (original).
        clip: CLIP folder (original).
        depthlab: folder holding the three ``.pth`` files (original).
        root: the ``save_pretrained`` folder (depthlab layout).
    """

    layout: str
    marigold: Path | None = None
    clip: Path | None = None
    depthlab: Path | None = None
    root: Path | None = None


def _find_depthlab_files(folder: Path) -> Path | None:
    """The folder under ``folder`` (itself included) that holds the three DepthLab ``.pth`` files."""
    if all((folder / name).is_file() for name in DEPTHLAB_FILES):
        return folder
    for candidate in sorted(folder.rglob(DEPTHLAB_FILES[0])):
        if all((candidate.parent / name).is_file() for name in DEPTHLAB_FILES):
            return candidate.parent
    return None


def _inspect_folder(root: Path) -> tuple[CheckpointPaths | None, list[str]]:
    """Classify ``root``; returns (paths or None, list of what is missing)."""
    index = root / "model_index.json"
    if index.is_file():
        try:
            class_name = json.loads(index.read_text()).get("_class_name")
        except json.JSONDecodeError as error:
            return None, [f"{index} is not valid JSON ({error})"]
        if class_name == "DepthLabPipeline":
            return CheckpointPaths("depthlab", root=root), []
    missing = []
    marigold, clip = root / MARIGOLD_DIR, root / CLIP_DIR
    for needed in (
        marigold / "vae" / "config.json",
        marigold / "unet" / "config.json",
        marigold / "scheduler" / "scheduler_config.json",
        clip / "config.json",
    ):
        if not needed.is_file():
            missing.append(str(needed))
    depthlab = _find_depthlab_files(root / DEPTHLAB_DIR) if (root / DEPTHLAB_DIR).is_dir() else None
    if depthlab is None:
        missing.extend(
            str(root / DEPTHLAB_DIR / name)
            for name in DEPTHLAB_FILES
            if not (root / DEPTHLAB_DIR / name).is_file()
        )
    if missing:
        return None, missing
    return CheckpointPaths("original", marigold=marigold, clip=clip, depthlab=depthlab), []


def _hub_checkpoints(
    download: bool, with_text_encoder: bool = False, repo_ids: Mapping[str, str] = HUB_IDS
) -> tuple[CheckpointPaths | None, list[str]]:
    marigold_patterns = ["model_index.json", "vae/*", "unet/config.json", "scheduler/*"]
    if with_text_encoder:
        marigold_patterns += ["text_encoder/*", "tokenizer/*"]
    wanted = {
        "marigold": marigold_patterns,
        "clip": ["config.json", "model.safetensors", "preprocessor_config.json"],
        "depthlab": ["*.pth"],
    }
    found = {key: hub_snapshot(repo_ids[key], patterns, download) for key, patterns in wanted.items()}
    missing = [f"{repo_ids[key]} ({', '.join(wanted[key])})" for key, path in found.items() if path is None]
    depthlab = _find_depthlab_files(found["depthlab"]) if found["depthlab"] else None
    if found["depthlab"] is not None and depthlab is None:
        missing.append(f"{repo_ids['depthlab']}: {', '.join(DEPTHLAB_FILES)}")
    if found["marigold"] is not None and not (found["marigold"] / "vae" / "config.json").is_file():
        missing.append(f"{repo_ids['marigold']}: vae/")
    if found["clip"] is not None and not (found["clip"] / "config.json").is_file():
        missing.append(f"{repo_ids['clip']}: config.json")
    if missing:
        return None, missing
    return CheckpointPaths("original", marigold=found["marigold"], clip=found["clip"], depthlab=depthlab), []


CheckpointSource = str | os.PathLike | Mapping[str, str] | Sequence[str] | None


def _hub_repo_ids(source: CheckpointSource) -> dict[str, str] | None:
    """The three hub ids meant by ``source``, or None when it names a local folder.

    None / ``"hub"`` -> the published ids; a mapping with keys ``marigold``, ``clip``,
    ``depthlab`` or a sequence of three ids -> those; ``"owner/name"`` that is not a local folder
    -> the published Marigold and CLIP ids with that DepthLab repository.
    """
    if source is None or (isinstance(source, str) and source == "hub"):
        return dict(HUB_IDS)
    if isinstance(source, Mapping):
        unknown = set(source) - set(HUB_IDS)
        if unknown:
            raise ValueError(f"`source` keys must be among {sorted(HUB_IDS)}; got {sorted(unknown)}")
        return {**HUB_IDS, **source}
    if isinstance(source, Sequence) and not isinstance(source, str):
        if len(source) != 3:
            raise ValueError(
                f"`source` as a sequence must hold 3 hub ids (marigold, clip, depthlab); got {source!r}"
            )
        return dict(zip(HUB_IDS, source, strict=True))
    text = str(source)
    if not Path(text).expanduser().exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        return {**HUB_IDS, "depthlab": text}
    return None


def resolve_checkpoints(source: CheckpointSource, with_text_encoder: bool = False) -> CheckpointPaths:
    """Resolve ``source`` to checkpoint paths.

    ``source``: a local folder (original layout or ``save_pretrained``), None (then
    ``$DEPTHLAB_CHECKPOINTS`` if set, else the published hub ids), or hub ids (see
    :func:`_hub_repo_ids`), resolved through the huggingface_hub cache (downloaded when online).

    Raises:
        CheckpointNotFoundError: naming every missing file and how to get it.
    """
    if source is None and os.environ.get(ENV_VAR):
        source = os.environ[ENV_VAR]
    repo_ids = _hub_repo_ids(source)
    if repo_ids is not None:
        paths, missing = _hub_checkpoints(
            download=True, with_text_encoder=with_text_encoder, repo_ids=repo_ids
        )
        if paths is None:
            raise CheckpointNotFoundError(
                "DepthLab weights are not in the huggingface_hub cache and could not be downloaded. "
                "Missing: " + "; ".join(missing) + ".\n" + download_help()
            )
        return paths
    root = Path(source).expanduser()
    if not root.is_dir():
        raise CheckpointNotFoundError(f"checkpoint folder {str(root)!r} does not exist.\n" + download_help())
    paths, missing = _inspect_folder(root)
    if paths is None:
        raise CheckpointNotFoundError(
            f"{str(root)!r} is neither a depthlab `save_pretrained` folder nor the original "
            "checkpoint layout. Missing: " + "; ".join(missing) + ".\n" + download_help()
        )
    return paths


def find_checkpoints(source: str | os.PathLike | None = None) -> CheckpointPaths | None:
    """Look for weights without downloading: ``source``, ``$DEPTHLAB_CHECKPOINTS``, then the hub cache.

    Returns:
        The resolved paths, or None when nothing complete was found.
    """
    for candidate in (source, os.environ.get(ENV_VAR)):
        if candidate:
            root = Path(candidate).expanduser()
            if root.is_dir():
                paths, _ = _inspect_folder(root)
                if paths is not None:
                    return paths
    try:
        paths, _ = _hub_checkpoints(download=False)
    except ImportError:  # huggingface_hub missing
        return None
    return paths


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors``, ``.bin`` or ``.pth`` state dict (pickles with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"weights file {str(path)!r} does not exist")
    if path.suffix == ".safetensors":
        return streaming.read_safetensors(path)  # truncated / corrupt files: one line naming the file
    return streaming.read_pth(path)  # memory-mapped; plain tensors only, never other pickled objects


def find_weights_file(folder: Path) -> Path:
    """The weights file of a diffusers/transformers component folder."""
    for name in (
        "diffusion_pytorch_model.safetensors",
        "model.safetensors",
        "diffusion_pytorch_model.bin",
        "pytorch_model.bin",
    ):
        if (folder / name).is_file():
            return folder / name
    sharded = sorted(folder.glob("*.safetensors.index.json")) + sorted(folder.glob("*.bin.index.json"))
    if sharded:
        return sharded[0]
    raise CheckpointNotFoundError(f"no weights file (*.safetensors / *.bin) in {str(folder)!r}")


def load_component_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a component folder, merging shards when the weights are sharded."""
    path = find_weights_file(folder)
    if path.name.endswith(".index.json"):
        shard_names = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shard_names:
            state.update(load_state_dict_file(folder / shard))
        return state
    return load_state_dict_file(path)


def component_files(folder: Path) -> tuple[Path, ...]:
    """The weight file(s) of a component folder: one file, or every shard of a sharded checkpoint."""
    path = find_weights_file(folder)
    if path.name.endswith(".index.json"):
        try:
            weight_map = json.loads(path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CheckpointError(f"{str(path)!r} is not a shard index ({error})") from None
        shards = tuple(folder / name for name in sorted(set(weight_map.values())))
        for shard in shards:
            if not shard.is_file():
                raise CheckpointNotFoundError(f"shard {str(shard)!r} named in {str(path)!r} does not exist")
        return shards
    return (path,)


@dataclass(frozen=True)
class WeightSource:
    """Where one component's tensors live, so it can be (re)filled tensor by tensor.

    Attributes:
        files: the weight files (several for a sharded checkpoint).
        label: how errors name the checkpoint.
        ignore_prefixes: checkpoint keys skipped without reading them (CLIP text tower, the
            reference U-Net's unused output head).
        strip_prefix: removed from checkpoint keys (``"text_model."`` for transformers >= 5).
    """

    files: tuple[Path, ...]
    label: str
    ignore_prefixes: tuple[str, ...] = ()
    strip_prefix: str = ""

    def load_into(self, model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
        """Fill ``model`` (parameters on the meta device) strictly; one copy of each tensor."""
        for file in self.files:
            if not file.is_file():
                raise CheckpointNotFoundError(f"weights file {str(file)!r} does not exist")
        prefix = self.strip_prefix
        return streaming.stream_into(
            model,
            self.files,
            self.label,
            ignore_prefixes=self.ignore_prefixes,
            dtype=dtype,
            rename=(lambda key: key.removeprefix(prefix)) if prefix else (lambda key: key),
        )


def load_strict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    source: str,
    ignore_prefixes: Iterable[str] = (),
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """Assign ``state_dict`` to ``model`` (built on the meta device), strictly.

    Keys starting with one of ``ignore_prefixes`` are dropped by name before the check.
    Floating-point tensors are cast to ``dtype`` (default: the dtype of the model's tensor, so
    float16-stored weights load into float32 modules).

    Raises:
        CheckpointError: naming missing, unexpected and mis-shaped tensors.
    """
    ignore_prefixes = tuple(ignore_prefixes)
    state = {k: v for k, v in state_dict.items() if not (ignore_prefixes and k.startswith(ignore_prefixes))}
    expected = model.state_dict(keep_vars=True)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mis_shaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise CheckpointError(f"{source} does not match {type(model).__name__}: " + "; ".join(parts))
    # Cast to each parameter's dtype (float16-stored tensors load into float32 modules).
    state = {
        k: v.to(dtype if dtype is not None and v.is_floating_point() else expected[k].dtype)
        for k, v in state.items()
    }
    # Memory-mapped safetensors can be unaligned, which makes CPU kernels take other code paths
    # (results then differ in the last bits from the same weights in fresh memory): realign.
    state = {k: v if v.data_ptr() % 64 == 0 else v.clone() for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model


def build_from_config(model_class: type, config: Mapping | object, **overrides) -> nn.Module:
    """Instantiate ``model_class`` on the meta device from a config (no random initialisation).

    Buffers are created for real (they are often not in checkpoints), parameters on meta.
    """
    with init_empty_weights(include_buffers=False):
        if hasattr(model_class, "from_config") and isinstance(config, Mapping):
            model = model_class.from_config(dict(config), **overrides)
        else:
            model = model_class(config)
    return model


# ---------------------------------------------------------------------- dtypes
_DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(
    value: torch.dtype | str | None, default: torch.dtype | None = torch.float32, name: str = "torch_dtype"
) -> torch.dtype | None:
    """``torch.float32``/``"fp16"``/``"bf16"``/``"torch.bfloat16"``/... -> a floating ``torch.dtype``.

    The one dtype-name rule of depthlab (pipeline, CLI, training, exports, benchmarks).

    Args:
        value: a dtype, one of its names (case-insensitive, ``torch.`` prefix allowed) or None.
        default: returned for None (float32; None keeps "no dtype given").
        name: the argument's name in error messages.

    Raises:
        ValueError: an unknown name or a non-floating dtype, naming ``name`` and the value.
        TypeError: neither a string nor a ``torch.dtype``.
    """
    if value is None:
        return default
    if isinstance(value, str):
        key = value.strip().lower().removeprefix("torch.")
        if key not in _DTYPE_NAMES:
            raise ValueError(f"`{name}`={value!r} is not a known dtype; use one of {sorted(_DTYPE_NAMES)}")
        return _DTYPE_NAMES[key]
    if not isinstance(value, torch.dtype):
        raise TypeError(f"`{name}` must be a torch.dtype or its name; got {type(value).__name__} {value!r}")
    if value not in _DTYPE_NAMES.values():
        raise ValueError(f"`{name}` must be torch.float32, torch.float16 or torch.bfloat16; got {value!r}")
    return value


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


# ---------------------------------------------------------------------- component loaders
def clip_image_processor() -> Any:
    """``CLIPImageProcessor()`` with its built-in defaults (the Pillow implementation)."""
    try:  # transformers >= 5: the Pillow backend has its own class
        from transformers import CLIPImageProcessorPil

        return CLIPImageProcessorPil()
    except ImportError:
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor()


def load_image_processor(folder: Path) -> Any:
    """The CLIP image processor saved in ``folder``, else the default one."""
    processor = clip_image_processor()
    if (folder / "preprocessor_config.json").is_file():
        processor = type(processor).from_pretrained(folder)
    return processor


def load_unet(
    config: Mapping[str, Any],
    in_channels: int,
    weights: Mapping[str, torch.Tensor] | WeightSource,
    source: str,
    dtype: torch.dtype,
) -> UNet2DConditionModel:
    """Estimation (12 channels) or reference (4 channels, output head removed) U-Net, strictly.

    ``weights``: a :class:`WeightSource` (streamed tensor by tensor) or an in-memory state dict.
    """
    model = build_from_config(UNet2DConditionModel, {**config, "in_channels": in_channels})
    ignore = REFERENCE_HEAD_PREFIXES if in_channels == REFERENCE_IN_CHANNELS else ()
    if in_channels == REFERENCE_IN_CHANNELS:
        remove_output_head(model)
    if isinstance(weights, WeightSource):
        return WeightSource(weights.files, source, ignore, weights.strip_prefix).load_into(model, dtype)
    return load_strict(model, weights, source, ignore_prefixes=ignore, dtype=dtype)


def clip_vision_config(folder: Path) -> CLIPVisionConfig:
    """Vision config (with ``projection_dim``) of a full ``CLIPModel`` or a vision-only folder."""
    raw = json.loads((folder / "config.json").read_text())
    if raw.get("model_type") == "clip" or "vision_config" in raw:
        full = CLIPConfig.from_pretrained(folder)
        config = full.vision_config
        config.projection_dim = full.projection_dim
    else:
        config = CLIPVisionConfig.from_pretrained(folder)
    config._attn_implementation = "sdpa"
    return config


def clip_vision_source(folder: Path) -> WeightSource:
    """The CLIP image encoder's weights; the text tower of a full CLIP file is never read."""
    return WeightSource(component_files(folder), f"CLIP image encoder in {str(folder)!r}", CLIP_TEXT_PREFIXES)


def load_clip_vision(
    folder: Path, dtype: torch.dtype, state_dict: Mapping[str, torch.Tensor] | None = None
) -> CLIPVisionModelWithProjection:
    """CLIP vision tower + projection from a full ``CLIPModel`` or a vision-only folder, strictly.

    Without ``state_dict`` the tensors are streamed from the folder's file(s) (text tower skipped
    unread); with one, it is assigned (text-tower keys dropped by name).
    """
    model = build_from_config(CLIPVisionModelWithProjection, clip_vision_config(folder))
    if state_dict is None:
        return clip_vision_source(folder).load_into(model, dtype)
    return load_strict(
        model,
        state_dict,
        f"CLIP image encoder in {str(folder)!r}",
        ignore_prefixes=CLIP_TEXT_PREFIXES,
        dtype=dtype,
    )


def load_text_encoder(folder: Path, dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """``(CLIPTextModel, CLIPTokenizer)`` from ``folder/text_encoder`` and ``folder/tokenizer``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    config = CLIPTextConfig.from_pretrained(folder / "text_encoder")
    model = build_from_config(CLIPTextModel, config)
    # transformers >= 5 keeps the text transformer at the top level of CLIPTextModel.
    nested = any(key.startswith("text_model.") for key in model.state_dict())
    WeightSource(
        component_files(folder / "text_encoder"),
        f"text encoder in {str(folder)!r}",
        strip_prefix="" if nested else "text_model.",
    ).load_into(model, dtype)
    return model, CLIPTokenizer.from_pretrained(folder / "tokenizer")


# Components that a low-memory pipeline on CPU reads from their files only while they run.
LARGE_COMPONENTS = ("image_encoder", "reference_unet", "estimation_unet")


def load_pipeline_components(
    paths: CheckpointPaths,
    load_text_encoder_too: bool,
    dtype: torch.dtype,
    defer: Iterable[str] = (),
) -> dict[str, Any]:
    """Every component of a DepthLab pipeline from resolved checkpoint ``paths``, strictly.

    Each model is built on the meta device and filled tensor by tensor from its file(s)
    (:mod:`depthlab.models.streaming`): one copy in memory, the CLIP text tower never read.

    Args:
        paths: from :func:`resolve_checkpoints`.
        load_text_encoder_too: also load the text encoder and tokenizer.
        dtype: floating tensors are cast to it, one at a time.
        defer: names of models (see :data:`LARGE_COMPONENTS`) left on the meta device, in
            ``dtype``, to be filled later from ``weight_sources`` (low-memory mode).

    Returns:
        The keyword arguments of :class:`~depthlab.pipeline.DepthLabPipeline`, plus
        ``weight_sources`` (name -> :class:`WeightSource`) and ``unconditional_context`` when
        the folder holds a stored one.
    """
    defer = set(defer)
    unknown = defer - set(LARGE_COMPONENTS)
    if unknown:
        raise ValueError(f"`defer` must name among {list(LARGE_COMPONENTS)}; got {sorted(unknown)}")
    if paths.layout == "original":
        models, sources, extra = _original_layout(paths)
    else:
        models, sources, extra = _depthlab_layout(paths.root)
    for name, model in models.items():
        if name in defer:
            model.to(dtype)  # still on meta: only the dtype is recorded
        else:
            sources[name].load_into(model, dtype)
    components: dict[str, Any] = {**models, **extra, "weight_sources": sources}
    if load_text_encoder_too:
        folder = paths.marigold if paths.layout == "original" else paths.root
        if paths.layout == "original" or (folder / "text_encoder").is_dir():
            components["text_encoder"], components["tokenizer"] = load_text_encoder(folder, dtype)
    return components


def _original_layout(paths: CheckpointPaths) -> tuple[dict[str, nn.Module], dict[str, WeightSource], dict]:
    """Models on meta + their weight sources from the original release's folders."""
    marigold, depthlab = paths.marigold, paths.depthlab
    unet_config = dict(UNet2DConditionModel.load_config(marigold / "unet"))
    reference_path = depthlab / "reference_unet.pth"
    estimation_path = depthlab / "denoising_unet.pth"
    mapping_path = depthlab / "mapping_layer.pth"
    sources = {
        "vae": WeightSource(component_files(marigold / "vae"), f"VAE in {str(marigold / 'vae')!r}"),
        "reference_unet": WeightSource((reference_path,), str(reference_path), REFERENCE_HEAD_PREFIXES),
        "estimation_unet": WeightSource((estimation_path,), str(estimation_path)),
        "image_encoder": clip_vision_source(paths.clip),
        "image_projection": WeightSource((mapping_path,), repr(str(mapping_path))),
    }
    image_encoder = build_from_config(CLIPVisionModelWithProjection, clip_vision_config(paths.clip))
    models = {
        "vae": build_from_config(AutoencoderKL, AutoencoderKL.load_config(marigold / "vae")),
        "reference_unet": remove_output_head(
            build_from_config(UNet2DConditionModel, {**unet_config, "in_channels": REFERENCE_IN_CHANNELS})
        ),
        "estimation_unet": build_from_config(UNet2DConditionModel, {**unet_config, "in_channels": 12}),
        "image_encoder": image_encoder,
        # The mapping layer's shape comes from the models it joins (CLIP embedding -> U-Net
        # context), never from the file, so a mis-shaped file is reported rather than built around.
        "image_projection": build_from_config(
            ImageProjection,
            {
                "in_features": image_encoder.config.projection_dim,
                "out_features": unet_config["cross_attention_dim"],
            },
        ),
    }
    extra = {
        "scheduler": DDIMScheduler.from_pretrained(marigold / "scheduler"),
        "image_processor": clip_image_processor(),
    }
    return models, sources, extra


def _depthlab_layout(root: Path) -> tuple[dict[str, nn.Module], dict[str, WeightSource], dict]:
    """Models on meta + their weight sources from a ``DepthLabPipeline.save_pretrained`` folder."""
    sources = {
        name: WeightSource(component_files(root / name), f"{root}/{name}")
        for name in ("vae", "reference_unet", "estimation_unet", "image_projection")
    }
    sources["image_encoder"] = WeightSource(
        component_files(root / "image_encoder"),
        f"CLIP image encoder in {str(root / 'image_encoder')!r}",
        CLIP_TEXT_PREFIXES,
    )
    models: dict[str, nn.Module] = {
        "vae": build_from_config(AutoencoderKL, AutoencoderKL.load_config(root / "vae"))
    }
    for name in ("reference_unet", "estimation_unet"):
        config = dict(UNet2DConditionModel.load_config(root / name))
        models[name] = build_from_config(UNet2DConditionModel, config)
        if config["in_channels"] == REFERENCE_IN_CHANNELS:
            remove_output_head(models[name])
    models["image_encoder"] = build_from_config(
        CLIPVisionModelWithProjection, clip_vision_config(root / "image_encoder")
    )
    models["image_projection"] = build_from_config(
        ImageProjection, ImageProjection.load_config(root / "image_projection")
    )
    extra: dict[str, Any] = {
        "scheduler": schedulers.load_scheduler(root / "scheduler"),
        "image_processor": load_image_processor(root / "image_processor"),
    }
    if (root / "unconditional_context.safetensors").is_file():
        extra["unconditional_context"] = load_state_dict_file(root / "unconditional_context.safetensors")[
            "context"
        ]
    extra.update(saved_call_defaults(root))
    return models, sources, extra


# The pipeline's call defaults stored with saved weights (``model_index.json``), as diffusers'
# ``register_to_config``; an argument left at None means "the model's default".
CALL_DEFAULTS = ("default_num_inference_steps", "default_processing_resolution", "default_strength")


def saved_call_defaults(root: Path) -> dict[str, Any]:
    """The call defaults stored in ``root/model_index.json`` (those present; older folders have none)."""
    index = json.loads((root / "model_index.json").read_text())
    return {name: index[name] for name in CALL_DEFAULTS if index.get(name) is not None}
