"""Where DepthLab weights live: folder names, hub ids and the one huggingface_hub helper.

Torch-free (``depthlab info`` and the classical-only install import it): only the standard library
and, inside :func:`hub_snapshot`, ``huggingface_hub``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "MARIGOLD_DIR",
    "CLIP_DIR",
    "DEPTHLAB_DIR",
    "DEPTHLAB_FILES",
    "HUB_IDS",
    "ENV_VAR",
    "CheckpointNotFoundError",
    "download_help",
    "hub_snapshot",
]

# Folder names of the original release's layout (what its README tells users to download).
MARIGOLD_DIR = "marigold-depth-v1-0"
CLIP_DIR = "CLIP-ViT-H-14-laion2B-s32B-b79K"
DEPTHLAB_DIR = "DepthLab"
DEPTHLAB_FILES = ("denoising_unet.pth", "reference_unet.pth", "mapping_layer.pth")
# Published weights on the huggingface hub.
HUB_IDS = {
    "marigold": "prs-eth/marigold-depth-v1-0",
    "clip": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    "depthlab": "Johanan0528/DepthLab",
}
# Environment variable naming a local checkpoint folder.
ENV_VAR = "DEPTHLAB_CHECKPOINTS"


class CheckpointNotFoundError(FileNotFoundError):
    """The weights are not where we looked; the message says what is missing and how to get it."""


def download_help() -> str:
    """How to get the published weights (appended to "not found" messages)."""
    return (
        "Get the weights with huggingface_hub (about 7 GB), e.g.\n"
        f"  hf download {HUB_IDS['marigold']} --local-dir checkpoints/{MARIGOLD_DIR}\n"
        f"  hf download {HUB_IDS['clip']} --local-dir checkpoints/{CLIP_DIR}\n"
        f"  hf download {HUB_IDS['depthlab']} --local-dir checkpoints/{DEPTHLAB_DIR}\n"
        f"then pass the `checkpoints` folder, or set ${ENV_VAR} to it."
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def hub_snapshot(
    repo_id: str, allow_patterns: Sequence[str] | None = None, download: bool = True
) -> Path | None:
    """The local snapshot folder of hub repository ``repo_id``, or None when it cannot be had.

    The huggingface_hub cache is tried first; only when ``download`` is true, ``HF_HUB_OFFLINE`` is
    not set and the hub is reachable is the repository (the files matching ``allow_patterns``)
    downloaded.
    """
    from huggingface_hub import snapshot_download

    patterns = list(allow_patterns) if allow_patterns is not None else None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=patterns))
    except Exception:  # not cached (LocalEntryNotFoundError and friends)
        pass
    if not download or _offline():
        return None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=5))
    except Exception as error:  # hub unreachable or repo missing
        logger.info("could not download %s: %s", repo_id, error)
        return None
