"""``depthlab info`` (versions, device, weights) and ``depthlab convert`` (checkpoint layouts)."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
from pathlib import Path
from typing import Any

from depthlab.cli import UserError
from depthlab.models.hub import ENV_VAR, HUB_IDS

_PACKAGES = (
    "numpy",
    "scipy",
    "cv2",
    "PIL",
    "matplotlib",
    "tifffile",
    "huggingface_hub",
    "OpenEXR",
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "safetensors",
)


def register(subparsers: Any) -> None:
    info = subparsers.add_parser(
        "info", help="versions, device, and where DepthLab weights are looked for / found"
    )
    info.add_argument("--checkpoints", default=None, help="also look in this folder")
    info.set_defaults(func=run_info)

    convert = subparsers.add_parser(
        "convert",
        help="convert DepthLab weights (original layout or hub cache) to a save_pretrained folder",
        description="Load DepthLab weights strictly from SOURCE (a folder in the original layout: "
        "marigold-depth-v1-0/, CLIP-ViT-H-14-laion2B-s32B-b79K/, DepthLab/*.pth; or 'hub' for "
        "the huggingface_hub cache) and write them to DEST with save_pretrained (safetensors).",
    )
    convert.add_argument("source", metavar="SOURCE", help="original-layout folder, or 'hub'")
    convert.add_argument("dest", metavar="DEST", help="output folder (must be empty)")
    convert.add_argument("--fp16", action="store_true", help="store the weights in float16")
    convert.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    convert.set_defaults(func=run_convert)


def _version(module_name: str) -> str:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return "not installed"
    except Exception as error:  # a broken install should not break `info`
        return f"import failed ({type(error).__name__})"
    return str(getattr(module, "__version__", "installed"))


def _device_lines() -> list[str]:
    try:
        import torch
    except ImportError:
        return [
            "device: cpu (torch not installed: classical methods only; "
            "`pip install 'depthlab[diffusion]'` for DepthLab)"
        ]
    lines = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            lines.append(f"device: cuda:{i} ({torch.cuda.get_device_name(i)})")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        lines.append("device: mps")
    lines.append(f"device: cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)")
    return lines


def _hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - huggingface_hub is a core dependency
        return "unknown (huggingface_hub not importable)"


def run_info(args: argparse.Namespace) -> int:
    """Print versions, devices and the weight search; always returns 0."""
    from depthlab import __version__

    print(f"depthlab {__version__}  (python {platform.python_version()}, {platform.platform()})")
    for name in _PACKAGES:
        print(f"  {name:16s} {_version(name)}")
    for line in _device_lines():
        print(line)
    print("DepthLab weights are looked for, in order, in:")
    if args.checkpoints:
        print(f"  1. --checkpoints {args.checkpoints}")
    env = os.environ.get(ENV_VAR)
    print(f"  {'2' if args.checkpoints else '1'}. ${ENV_VAR} = {env or '(not set)'}")
    print(
        f"  {'3' if args.checkpoints else '2'}. huggingface_hub cache {_hub_cache()} for "
        + ", ".join(HUB_IDS.values())
    )
    try:
        from depthlab.models.loading import find_checkpoints
    except ImportError as error:
        print(f"found: cannot check (needs torch: {error}); `depthlab complete` will use 'guided'")
        return 0
    paths = find_checkpoints(args.checkpoints)
    if paths is None:
        print("found: nothing; `depthlab complete --method auto` will use the classical 'guided' fill")
    else:
        where = paths.root or ", ".join(str(p) for p in (paths.marigold, paths.clip, paths.depthlab))
        print(f"found: {paths.layout} layout at {where}; `--method auto` will use DepthLab")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Load weights strictly and write them with ``save_pretrained``; returns 0 on success."""
    try:
        import torch

        from depthlab.pipeline import DepthLabPipeline
    except ImportError as error:
        raise UserError(
            f"convert needs torch and diffusers ({error}); `pip install 'depthlab[diffusion]'`"
        ) from None
    source = None if args.source == "hub" else args.source
    if source is not None and not Path(source).is_dir():
        raise FileNotFoundError(f"SOURCE {source!r} is not a folder")
    dest = Path(args.dest)
    if dest.exists() and any(dest.iterdir()) and not args.overwrite:
        raise FileExistsError(f"DEST {dest} is not empty; pass --overwrite to write into it")
    pipe = DepthLabPipeline.from_pretrained(source, torch_dtype=torch.float32, device="cpu")
    pipe.save_pretrained(dest, dtype=torch.float16 if args.fp16 else None, overwrite=args.overwrite)
    print(f"depthlab convert: wrote {dest} ({'float16' if args.fp16 else 'original dtype'})")
    return 0
