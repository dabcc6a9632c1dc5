"""Write full-size random-weight DepthLab checkpoints in the original release's layout.

Same file names, formats and sizes as what the DepthLab README tells users to download::

    <root>/marigold-depth-v1-0/vae/            config.json + diffusion_pytorch_model.safetensors (SD2 VAE)
    <root>/marigold-depth-v1-0/unet/           config.json (Marigold U-Net, in_channels 8)
    <root>/marigold-depth-v1-0/scheduler/      scheduler_config.json
    <root>/CLIP-ViT-H-14-laion2B-s32B-b79K/    config.json + model.safetensors: a *full* CLIPModel
                                               (ViT-H/14 vision tower and the text tower, 3.9 GB)
    <root>/DepthLab/denoising_unet.pth         estimation U-Net state dict (12 channels), 3.5 GB
    <root>/DepthLab/reference_unet.pth         reference U-Net state dict (4 channels, no head)
    <root>/DepthLab/mapping_layer.pth          {"mapping_layer.weight", "mapping_layer.bias"}

Weights are N(0, 0.02) (norm weights 1, so activations stay finite), one model in memory at a time
(peak about 4 GB). Used by ``benchmarks/memory_speed.py``; about 11 GB on disk.

Usage: ``flock /tmp/depthlab-heavy.lock python benchmarks/make_full_checkpoints.py /tmp/depthlab-full``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_speed import FULL_CLIP_VISION, FULL_UNET, FULL_VAE  # noqa: E402

from depthlab.models.components import REFERENCE_HEAD_PREFIXES  # noqa: E402
from depthlab.models.hub import CLIP_DIR, DEPTHLAB_DIR, MARIGOLD_DIR  # noqa: E402
from depthlab.models.tiny import MARIGOLD_SCHEDULER_CONFIG  # noqa: E402

# OpenCLIP ViT-H/14 text tower as in laion/CLIP-ViT-H-14-laion2B-s32B-b79K.
FULL_CLIP_TEXT = {
    "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
    "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "gelu",
}  # fmt: skip


def random_state(model: torch.nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Fill a meta-built model with N(0, 0.02) (norm weights 1, biases of norms 0); its state dict."""
    model.to_empty(device="cpu")
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue
            if "norm" in name and name.endswith("weight"):
                tensor.fill_(1.0)
            elif "norm" in name and name.endswith("bias"):
                tensor.zero_()
            else:
                tensor.normal_(0.0, 0.02, generator=generator)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def jsonable(config: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(args.seed)
    root = args.root
    marigold, clip_dir, depthlab = root / MARIGOLD_DIR, root / CLIP_DIR, root / DEPTHLAB_DIR
    for folder in (marigold / "vae", marigold / "unet", clip_dir, depthlab):
        folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    with init_empty_weights(include_buffers=False):
        vae = AutoencoderKL(**FULL_VAE)
    vae.save_config(marigold / "vae")
    save_file(random_state(vae, generator), str(marigold / "vae" / "diffusion_pytorch_model.safetensors"))
    del vae
    unet_config = {"_class_name": "UNet2DConditionModel", **jsonable(FULL_UNET), "in_channels": 8}
    (marigold / "unet" / "config.json").write_text(json.dumps(unet_config, indent=2) + "\n")
    DDIMScheduler(**MARIGOLD_SCHEDULER_CONFIG).save_pretrained(marigold / "scheduler")
    (marigold / "model_index.json").write_text(json.dumps({"_class_name": "MarigoldDepthPipeline"}) + "\n")
    print(f"VAE done ({time.perf_counter() - start:.0f} s)", flush=True)

    for file_name, channels in (("reference_unet.pth", 4), ("denoising_unet.pth", 12)):
        with init_empty_weights(include_buffers=False):
            unet = UNet2DConditionModel(**{**FULL_UNET, "in_channels": channels})
        state = random_state(unet, generator)
        if channels == 4:
            state = {k: v for k, v in state.items() if not k.startswith(REFERENCE_HEAD_PREFIXES)}
        torch.save(state, depthlab / file_name)
        del unet, state
        print(f"{file_name} done ({time.perf_counter() - start:.0f} s)", flush=True)
    linear = torch.nn.Linear(1024, 1024)
    torch.save(
        {f"mapping_layer.{k}": v for k, v in random_state(linear, generator).items()},
        depthlab / "mapping_layer.pth",
    )

    config = CLIPConfig(
        text_config=FULL_CLIP_TEXT,
        vision_config={k: v for k, v in FULL_CLIP_VISION.items() if k != "projection_dim"},
        projection_dim=FULL_CLIP_VISION["projection_dim"],
    )
    with init_empty_weights(include_buffers=False):
        clip = CLIPModel(config)
    config.save_pretrained(clip_dir)
    state = random_state(clip, generator)
    save_file(state, str(clip_dir / "model.safetensors"), metadata={"format": "pt"})
    print(f"CLIP done ({time.perf_counter() - start:.0f} s); wrote {root}", flush=True)


if __name__ == "__main__":
    main()
