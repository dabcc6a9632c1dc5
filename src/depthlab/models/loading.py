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

import torch
from accelerate import init_empty_weights
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "HUB_IDS",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointPaths",
    "find_checkpoints",
    "resolve_checkpoints",
    "load_state_dict_file",
    "load_strict",
    "build_from_config",
]

MARIGOLD_DIR = "marigold-depth-v1-0"
CLIP_DIR = "CLIP-ViT-H-14-laion2B-s32B-b79K"
DEPTHLAB_DIR = "DepthLab"
DEPTHLAB_FILES = ("denoising_unet.pth", "reference_unet.pth", "mapping_layer.pth")
HUB_IDS = {
    "marigold": "prs-eth/marigold-depth-v1-0",
    "clip": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    "depthlab": "Johanan0528/DepthLab",
}
ENV_VAR = "DEPTHLAB_CHECKPOINTS"
# Keys of a full CLIPModel checkpoint that belong to the text tower, not used by the vision model.
CLIP_TEXT_PREFIXES = ("text_model.", "text_projection.", "logit_scale")


class CheckpointError(RuntimeError):
    """A checkpoint does not match the model: missing, unexpected or mis-shaped tensors."""


class CheckpointNotFoundError(FileNotFoundError):
    """The weights are not where we looked; the message says what is missing and how to get it."""


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


def _download_help() -> str:
    return (
        "Get the weights with huggingface_hub (about 7 GB), e.g.\n"
        f"  hf download {HUB_IDS['marigold']} --local-dir checkpoints/{MARIGOLD_DIR}\n"
        f"  hf download {HUB_IDS['clip']} --local-dir checkpoints/{CLIP_DIR}\n"
        f"  hf download {HUB_IDS['depthlab']} --local-dir checkpoints/{DEPTHLAB_DIR}\n"
        f"then pass the `checkpoints` folder, or set ${ENV_VAR} to it."
    )


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


def _hub_snapshot(repo_id: str, allow_patterns: list[str] | None, download: bool) -> Path | None:
    """The cached snapshot of ``repo_id``; downloaded only if ``download``, online and allowed."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=allow_patterns))
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        pass
    if not download or os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=allow_patterns, etag_timeout=5))
    except Exception as error:  # hub unreachable or repo missing
        logger.info("could not download %s: %s", repo_id, error)
        return None


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
    found = {key: _hub_snapshot(repo_ids[key], patterns, download) for key, patterns in wanted.items()}
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
            raise ValueError(f"`source` as a sequence must hold 3 hub ids (marigold, clip, depthlab); got {source!r}")
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
        paths, missing = _hub_checkpoints(download=True, with_text_encoder=with_text_encoder, repo_ids=repo_ids)
        if paths is None:
            raise CheckpointNotFoundError(
                "DepthLab weights are not in the huggingface_hub cache and could not be downloaded. "
                "Missing: " + "; ".join(missing) + ".\n" + _download_help()
            )
        return paths
    root = Path(source).expanduser()
    if not root.is_dir():
        raise CheckpointNotFoundError(f"checkpoint folder {str(root)!r} does not exist.\n" + _download_help())
    paths, missing = _inspect_folder(root)
    if paths is None:
        raise CheckpointNotFoundError(
            f"{str(root)!r} is neither a depthlab `save_pretrained` folder nor the original "
            "checkpoint layout. Missing: " + "; ".join(missing) + ".\n" + _download_help()
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
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle.UnpicklingError for anything but plain tensors
        raise CheckpointError(
            f"{str(path)!r} could not be read as a plain state dict with weights_only=True "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{str(path)!r} does not hold a state dict (got {type(state).__name__})")
    return dict(state)


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
